//! The hourly rollups of usage and allocation that showback reads instead
//! of samples (migration 0023): what is sealed, the samples of time windows,
//! and the rolled-up integrals of a period by price epoch.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;

use crate::error::Error;

/// Stops every writer of samples until the transaction ends, and every
/// other catch-up: what is read is all there is, and each hour is added once.
pub async fn lock_samples(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query!("LOCK TABLE usage_samples IN SHARE ROW EXCLUSIVE MODE")
        .execute(conn)
        .await?;
    Ok(())
}

/// A namespace with hours to roll up: from `sealed_until` to `seal_to`.
#[derive(Debug, Clone)]
pub struct Pending {
    pub namespace_id: i64,
    pub namespace: String,
    pub slug: String,
    pub sealed_until: i64,
    pub seal_to: i64,
}

/// Up to `limit` namespaces whose latest sample lies in a later hour than
/// their sealed one, in id order after `after`.
pub async fn pending(
    conn: &mut PgConnection,
    after: i64,
    limit: i64,
) -> Result<Vec<Pending>, Error> {
    Ok(sqlx::query_as!(
        Pending,
        r#"SELECT n.id AS namespace_id, n.name AS namespace, t.slug,
                  COALESCE(m.sealed_until, 0) AS "sealed_until!",
                  (floor(extract(epoch FROM l.last) / 3600) * 3600)::bigint AS "seal_to!"
           FROM namespaces n
           JOIN tenants t ON t.id = n.tenant_id
           LEFT JOIN showback_marks m ON m.namespace_id = n.id
           CROSS JOIN LATERAL (SELECT max(s.sampled_at) AS last FROM usage_samples s
                               WHERE s.namespace_id = n.id) l
           WHERE n.id > $1 AND l.last IS NOT NULL
             AND floor(extract(epoch FROM l.last) / 3600) * 3600 > COALESCE(m.sealed_until, 0)
           ORDER BY n.id
           LIMIT $2"#,
        after,
        limit
    )
    .fetch_all(conn)
    .await?)
}

/// One sample standing in a window, tagged with the window's index.
#[derive(Debug, Clone)]
pub struct WindowSample {
    pub window: i64,
    pub namespace_id: i64,
    pub sampled_at: DateTime<Utc>,
    pub used: String,
    pub allocated: String,
}

/// The samples that stand in each window `[froms[i], tos[i])` of namespace
/// `ids[i]`: the last one taken at or before its start and every later one
/// before its end; by window (numbered from 1), then time.
pub async fn window_samples(
    conn: &mut PgConnection,
    ids: &[i64],
    froms: &[DateTime<Utc>],
    tos: &[DateTime<Utc>],
) -> Result<Vec<WindowSample>, Error> {
    Ok(sqlx::query_as!(
        WindowSample,
        r#"SELECT w.i AS "window!", s.namespace_id, s.sampled_at,
                  s.used::text AS "used!", s.allocated::text AS "allocated!"
           FROM unnest($1::bigint[], $2::timestamptz[], $3::timestamptz[])
                WITH ORDINALITY AS w(id, a, b, i)
           CROSS JOIN LATERAL (
               SELECT COALESCE(max(p.sampled_at), w.a) AS start FROM usage_samples p
               WHERE p.namespace_id = w.id AND p.sampled_at <= w.a) AS st
           JOIN usage_samples s ON s.namespace_id = w.id AND s.sampled_at >= st.start AND s.sampled_at < w.b
           ORDER BY w.i, s.sampled_at"#,
        ids,
        froms,
        tos
    )
    .fetch_all(conn)
    .await?)
}

/// Rolled-up hours of one namespace, day and resource, to be added to what
/// is stored: integrals as decimal text, running sums over the hours as
/// array literals of 25 (hours not sealed add nothing).
#[derive(Debug, Default)]
pub struct DayRows {
    pub namespace_ids: Vec<i64>,
    pub days: Vec<i64>,
    pub resources: Vec<String>,
    pub allocated: Vec<String>,
    pub used: Vec<String>,
    pub allocated_hours: Vec<String>,
    pub used_hours: Vec<String>,
}

/// Adds the rows to the stored days.
pub async fn add_days(conn: &mut PgConnection, rows: &DayRows) -> Result<(), Error> {
    sqlx::query!(
        r#"INSERT INTO showback_days AS d
               (namespace_id, day, resource, allocated, used, allocated_hours, used_hours)
           SELECT r.id, r.day, r.resource, r.allocated::numeric, r.used::numeric,
                  r.allocated_hours::numeric[], r.used_hours::numeric[]
           FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
                AS r(id, day, resource, allocated, used, allocated_hours, used_hours)
           ON CONFLICT (namespace_id, day, resource) DO UPDATE SET
               allocated = d.allocated + EXCLUDED.allocated,
               used = d.used + EXCLUDED.used,
               allocated_hours = ARRAY(SELECT x + y FROM unnest(d.allocated_hours, EXCLUDED.allocated_hours)
                                       WITH ORDINALITY AS z(x, y, i) ORDER BY i),
               used_hours = ARRAY(SELECT x + y FROM unnest(d.used_hours, EXCLUDED.used_hours)
                                  WITH ORDINALITY AS z(x, y, i) ORDER BY i)"#,
        &rows.namespace_ids,
        &rows.days,
        &rows.resources,
        &rows.allocated,
        &rows.used,
        &rows.allocated_hours,
        &rows.used_hours,
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records that these namespaces are rolled up until these hours.
pub async fn seal(conn: &mut PgConnection, ids: &[i64], until: &[i64]) -> Result<(), Error> {
    sqlx::query!(
        "INSERT INTO showback_marks (namespace_id, sealed_until)
         SELECT * FROM unnest($1::bigint[], $2::bigint[])
         ON CONFLICT (namespace_id) DO UPDATE SET sealed_until = EXCLUDED.sealed_until",
        ids,
        until
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// What a report needs to know of a namespace before reading its rollups.
#[derive(Debug, Clone)]
pub struct Mark {
    pub namespace_id: i64,
    pub valid_from: i64,
    pub sealed_until: i64,
    /// Whether any sample was taken before the period's end.
    pub seen: bool,
}

/// The marks of these namespaces, in the order given.
pub async fn marks(
    conn: &mut PgConnection,
    ids: &[i64],
    to: DateTime<Utc>,
) -> Result<Vec<Mark>, Error> {
    Ok(sqlx::query_as!(
        Mark,
        r#"SELECT ns.id AS "namespace_id!",
                  COALESCE(m.valid_from, 0) AS "valid_from!",
                  COALESCE(m.sealed_until, 0) AS "sealed_until!",
                  EXISTS (SELECT 1 FROM usage_samples s
                          WHERE s.namespace_id = ns.id AND s.sampled_at < $2) AS "seen!"
           FROM unnest($1::bigint[]) WITH ORDINALITY AS ns(id, i)
           LEFT JOIN showback_marks m ON m.namespace_id = ns.id
           ORDER BY ns.i"#,
        ids,
        to
    )
    .fetch_all(conn)
    .await?)
}

/// The integral of one resource over one price epoch, summed over the
/// namespaces of one bucket (a group of the report and a cluster).
#[derive(Debug, Clone)]
pub struct Rolled {
    /// The bucket, as the query numbers them.
    pub bucket: i32,
    pub resource: String,
    /// The epoch, as the report's plan numbers them.
    pub epoch: i32,
    pub allocated: String,
    pub used: String,
}

/// Where a report reads rollups: what each namespace's integrals are
/// summed into (a bucket, an epoch), over whole days or parts of days.
#[derive(Debug, Default)]
pub struct RollupQuery {
    /// Whole days `[from, to)` (Unix seconds, UTC midnights) of a
    /// namespace in one epoch: the days' integrals, read from the index.
    pub ids: Vec<i64>,
    pub froms: Vec<i64>,
    pub tos: Vec<i64>,
    pub buckets: Vec<i32>,
    pub epochs: Vec<i32>,
    /// The hours `[first, last)` of one day of a namespace in one epoch:
    /// one subtraction of the day's running sums.
    pub part_ids: Vec<i64>,
    pub part_days: Vec<i64>,
    pub part_firsts: Vec<i32>,
    pub part_lasts: Vec<i32>,
    pub part_buckets: Vec<i32>,
    pub part_epochs: Vec<i32>,
}

/// The integrals by bucket, resource and epoch, summed in the database (a
/// bucket and epoch may come twice: once from whole days, once from parts).
/// The whole days are an index-only scan of the primary key, which carries
/// each day's integrals (migration 0026); only the parts of days read the
/// rows' running sums.
pub async fn rolled(conn: &mut PgConnection, q: &RollupQuery) -> Result<Vec<Rolled>, Error> {
    Ok(sqlx::query_as!(
        Rolled,
        r#"SELECT w.g AS "bucket!", d.resource AS "resource!", w.epoch AS "epoch!",
                  sum(d.allocated)::text AS "allocated!", sum(d.used)::text AS "used!"
           FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::int[], $5::int[]) AS w(id, a, b, g, epoch)
           JOIN showback_days d ON d.namespace_id = w.id AND d.day >= w.a AND d.day < w.b
           GROUP BY w.g, d.resource, w.epoch
           UNION ALL
           SELECT p.g, d.resource, p.epoch,
                  sum(d.allocated_hours[p.last + 1] - d.allocated_hours[p.first + 1])::text,
                  sum(d.used_hours[p.last + 1] - d.used_hours[p.first + 1])::text
           FROM unnest($6::bigint[], $7::bigint[], $8::int[], $9::int[], $10::int[], $11::int[])
                AS p(id, day, first, last, g, epoch)
           JOIN showback_days d ON d.namespace_id = p.id AND d.day = p.day
           GROUP BY p.g, d.resource, p.epoch"#,
        &q.ids,
        &q.froms,
        &q.tos,
        &q.buckets,
        &q.epochs,
        &q.part_ids,
        &q.part_days,
        &q.part_firsts,
        &q.part_lasts,
        &q.part_buckets,
        &q.part_epochs,
    )
    .fetch_all(conn)
    .await?)
}
