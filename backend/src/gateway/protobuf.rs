//! kubectl and client-go send built-in kinds as protobuf. The gateway does
//! not decode whole objects; it reads and rewrites just the fields it must,
//! by their numbers, which are fixed by the Kubernetes API for every kind:
//! the envelope is `k8s\0` + `runtime.Unknown` (field 2: the object's
//! bytes), every object's field 1 is its `ObjectMeta`, and in that, field 1
//! is the name and field 3 the namespace. Answers are always asked for as
//! JSON, so only requests are ever protobuf.

const MAGIC: &[u8] = b"k8s\0";
const LENGTH_DELIMITED: u64 = 2;

/// Field paths from the envelope: `runtime.Unknown` field 2 is the object.
pub const METADATA_NAME: &[u64] = &[2, 1, 1];
pub const METADATA_NAMESPACE: &[u64] = &[2, 1, 3];
/// SelfSubjectAccessReview: spec (2), resourceAttributes (1), then
/// namespace (1), verb (2), group (3), resource (5).
pub const ACCESS_REVIEW_NAMESPACE: &[u64] = &[2, 2, 1, 1];
pub const ACCESS_REVIEW_VERB: &[u64] = &[2, 2, 1, 2];
pub const ACCESS_REVIEW_GROUP: &[u64] = &[2, 2, 1, 3];
pub const ACCESS_REVIEW_RESOURCE: &[u64] = &[2, 2, 1, 5];
/// SelfSubjectRulesReview: spec (2), namespace (1).
pub const RULES_REVIEW_NAMESPACE: &[u64] = &[2, 2, 1];

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos)?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// One field: its number, wire type and the bytes of its value (for a
/// length-delimited field, without the length).
struct Field<'a> {
    number: u64,
    wire: u64,
    /// The whole field as encoded, key included.
    encoded: &'a [u8],
    payload: &'a [u8],
}

fn fields(message: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let start = pos;
        let key = varint(message, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        let payload_start;
        match wire {
            0 => {
                payload_start = pos;
                varint(message, &mut pos)?;
            }
            1 => {
                payload_start = pos;
                pos = pos.checked_add(8)?;
            }
            LENGTH_DELIMITED => {
                let len = usize::try_from(varint(message, &mut pos)?).ok()?;
                payload_start = pos;
                pos = pos.checked_add(len)?;
            }
            5 => {
                payload_start = pos;
                pos = pos.checked_add(4)?;
            }
            _ => return None,
        }
        if pos > message.len() {
            return None;
        }
        out.push(Field {
            number,
            wire,
            encoded: &message[start..pos],
            payload: &message[payload_start..pos],
        });
    }
    Some(out)
}

/// The message with every length-delimited field `number` replaced by
/// what `change` makes of it (`None`: kept as it is).
fn replace(
    message: &[u8],
    number: u64,
    change: &dyn Fn(&[u8]) -> Option<Vec<u8>>,
) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(message.len() + 16);
    for field in fields(message)? {
        match (field.number == number && field.wire == LENGTH_DELIMITED)
            .then(|| change(field.payload))
            .flatten()
        {
            Some(new) => {
                put_varint(&mut out, (number << 3) | LENGTH_DELIMITED);
                put_varint(&mut out, new.len() as u64);
                out.extend_from_slice(&new);
            }
            None => out.extend_from_slice(field.encoded),
        }
    }
    Some(out)
}

fn first(message: &[u8], number: u64) -> Option<&[u8]> {
    fields(message)?
        .into_iter()
        .find(|f| f.number == number && f.wire == LENGTH_DELIMITED)
        .map(|f| f.payload)
}

pub fn is_protobuf(body: &[u8]) -> bool {
    body.starts_with(MAGIC)
}

/// The string field at `path` renamed by `rename`; `None` when the body is
/// not a protobuf object the gateway can read.
pub fn rename_at(
    body: &[u8],
    path: &[u64],
    rename: &dyn Fn(&str) -> Option<String>,
) -> Option<Vec<u8>> {
    let unknown = body.strip_prefix(MAGIC)?;
    Some([MAGIC, &rename_in(unknown, path, rename)?].concat())
}

fn rename_in(
    message: &[u8],
    path: &[u64],
    rename: &dyn Fn(&str) -> Option<String>,
) -> Option<Vec<u8>> {
    let (number, rest) = path.split_first()?;
    replace(message, *number, &|inner: &[u8]| {
        if rest.is_empty() {
            std::str::from_utf8(inner)
                .ok()
                .and_then(rename)
                .map(String::into_bytes)
        } else {
            rename_in(inner, rest, rename)
        }
    })
}

/// The string field at `path`.
pub fn read_at(body: &[u8], path: &[u64]) -> Option<String> {
    let mut message = body.strip_prefix(MAGIC)?;
    for number in path {
        message = first(message, *number)?;
    }
    std::str::from_utf8(message).ok().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn length_delimited(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, (number << 3) | LENGTH_DELIMITED);
        put_varint(&mut out, payload.len() as u64);
        out.extend_from_slice(payload);
        out
    }

    /// A ConfigMap as kubectl sends it: envelope, type meta, object with
    /// metadata {name, namespace} and data.
    fn config_map(namespace: &str) -> Vec<u8> {
        let metadata = [
            length_delimited(1, b"settings"),
            length_delimited(3, namespace.as_bytes()),
        ]
        .concat();
        let object = [
            length_delimited(1, &metadata),
            length_delimited(2, b"mode\x12fast"),
        ]
        .concat();
        let type_meta = [
            length_delimited(1, b"v1"),
            length_delimited(2, b"ConfigMap"),
        ]
        .concat();
        let unknown = [
            length_delimited(1, &type_meta),
            length_delimited(2, &object),
            length_delimited(4, b"application/vnd.kubernetes.protobuf"),
        ]
        .concat();
        [MAGIC, &unknown].concat()
    }

    #[test]
    fn the_namespace_is_renamed_and_everything_else_kept() {
        let rename = |ns: &str| (ns == "dev").then(|| "acme-dev".to_string());
        let renamed = rename_at(&config_map("dev"), METADATA_NAMESPACE, &rename).unwrap();
        assert_eq!(renamed, config_map("acme-dev"));
        assert_eq!(
            read_at(&renamed, METADATA_NAME).as_deref(),
            Some("settings")
        );
        let foreign = rename_at(&config_map("kube-system"), METADATA_NAMESPACE, &rename).unwrap();
        assert_eq!(
            foreign,
            config_map("kube-system"),
            "not the tenant's: unchanged"
        );
    }

    #[test]
    fn long_values_get_longer_lengths() {
        let long = "x".repeat(200);
        let rename = |_: &str| Some(long.clone());
        let renamed = rename_at(&config_map("dev"), METADATA_NAMESPACE, &rename).unwrap();
        assert_eq!(renamed, config_map(&long));
    }

    #[test]
    fn broken_bodies_are_not_read() {
        assert!(rename_at(b"{\"kind\":\"ConfigMap\"}", METADATA_NAMESPACE, &|_| None).is_none());
        let mut truncated = config_map("dev");
        truncated.truncate(truncated.len() - 3);
        assert!(rename_at(&truncated, METADATA_NAMESPACE, &|_| None).is_none());
    }
}
