//! Quota resources and the budget rule: the sum of the namespaces' allocations
//! never exceeds the tenant's budget.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::{FieldError, Quantity, is_qualified_name};

/// Resource names Kubernetes accepts in a ResourceQuota without a domain prefix.
const STANDARD: &[&str] = &[
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// Object counts, which only whole numbers make sense for.
const COUNTS: &[&str] = &[
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "persistentvolumeclaims",
    "configmaps",
    "services.nodeports",
    "services.loadbalancers",
];

/// A name usable as a key of a tenant budget: any resource name Kubernetes
/// accepts in a ResourceQuota, plus [`QuotaResource::NAMESPACES`], the
/// tenant-level limit on how many namespaces it may have.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct QuotaResource(String);

impl QuotaResource {
    pub const NAMESPACES: &str = "namespaces";

    pub fn parse(s: &str) -> Result<Self, String> {
        let standard = STANDARD.contains(&s)
            || s == Self::NAMESPACES
            || s.starts_with("hugepages-")
            || s.starts_with("requests.hugepages-");
        if !is_qualified_name(s) || (!s.contains('/') && !standard) {
            return Err(format!(
                "\"{s}\" is not a ResourceQuota resource name; use a standard name such as requests.cpu, limits.memory or pods, count/<resource>.<group>, or a domain-qualified name such as requests.nvidia.com/gpu"
            ));
        }
        Ok(Self(s.to_string()))
    }

    /// A whole-number amount, such as a namespace count.
    pub fn count(n: u32) -> Quantity {
        n.to_string().parse().unwrap_or_else(|_| Quantity::zero())
    }

    pub fn namespaces() -> Self {
        Self(Self::NAMESPACES.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the portal keeps this item at tenant level instead of pushing
    /// it into each namespace's ResourceQuota.
    pub fn is_tenant_level(&self) -> bool {
        self.0 == Self::NAMESPACES
    }

    /// Counts of objects and extended resources take whole numbers only, as
    /// Kubernetes requires for them.
    fn needs_whole_number(&self) -> bool {
        let s = self.0.as_str();
        COUNTS.contains(&s)
            || s == Self::NAMESPACES
            || s.starts_with("count/")
            || (s.contains('/') && !s.contains("storageclass.storage.k8s.io/"))
    }
}

impl fmt::Display for QuotaResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A budget's CPU and memory requests as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterDemand {
    pub cpu_millis: i64,
    pub memory_bytes: i64,
}

/// Resource name to amount, as in a ResourceQuota's `spec.hard`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ResourceList(BTreeMap<QuotaResource, Quantity>);

impl ResourceList {
    /// Parses a map of strings; every bad key or value is reported, under `field`.
    pub fn parse(raw: &BTreeMap<String, String>, field: &str) -> Result<Self, Vec<FieldError>> {
        let mut list = BTreeMap::new();
        let mut errors = Vec::new();
        for (key, value) in raw {
            let at = format!("{field}.{key}");
            let resource = match QuotaResource::parse(key) {
                Ok(r) => r,
                Err(rule) => {
                    errors.push(FieldError::new(at, rule));
                    continue;
                }
            };
            match value.parse::<Quantity>() {
                Ok(q) if q.is_negative() => {
                    errors.push(FieldError::new(at, "must not be negative"));
                }
                Ok(q) if resource.needs_whole_number() && !q.is_whole() => {
                    errors.push(FieldError::new(
                        at,
                        "must be a whole number for this resource",
                    ));
                }
                Ok(q) => {
                    list.insert(resource, q);
                }
                Err(e) => errors.push(FieldError::new(at, e.to_string())),
            }
        }
        if errors.is_empty() {
            Ok(Self(list))
        } else {
            Err(errors)
        }
    }

    pub fn get(&self, resource: &QuotaResource) -> Option<&Quantity> {
        self.0.get(resource)
    }

    pub fn insert(&mut self, resource: QuotaResource, amount: Quantity) {
        self.0.insert(resource, amount);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&QuotaResource, &Quantity)> {
        self.0.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The items pushed into a namespace's ResourceQuota.
    pub fn namespace_items(&self) -> impl Iterator<Item = (&QuotaResource, &Quantity)> {
        self.0.iter().filter(|(r, _)| !r.is_tenant_level())
    }

    /// Adds `other` into `self`, resource by resource.
    pub fn add(&mut self, other: &ResourceList) -> Result<(), FieldError> {
        for (resource, amount) in other.iter() {
            let sum = match self.0.get(resource) {
                Some(have) => have.checked_add(amount).ok_or_else(|| {
                    FieldError::new(resource.as_str(), "the sum of allocations overflows")
                })?,
                None => amount.clone(),
            };
            self.0.insert(resource.clone(), sum);
        }
        Ok(())
    }

    /// Sums many lists.
    pub fn total<'a>(
        lists: impl IntoIterator<Item = &'a ResourceList>,
    ) -> Result<Self, FieldError> {
        let mut total = Self::default();
        for list in lists {
            total.add(list)?;
        }
        Ok(total)
    }

    /// What this budget promises of a cluster's CPU (millicores) and memory
    /// (bytes), rounded up and saturating, for placement to add up. The
    /// requests count: they are what the scheduler reserves.
    pub fn cluster_demand(&self) -> ClusterDemand {
        let amount = |names: [&str; 2]| {
            names
                .iter()
                .filter_map(|name| self.0.get(&QuotaResource(name.to_string())))
                .map(Quantity::nanos)
                .max()
                .unwrap_or(0)
        };
        let whole = |nanos: i128, unit: i128| {
            i64::try_from((nanos + unit - 1).div_euclid(unit)).unwrap_or(i64::MAX)
        };
        ClusterDemand {
            cpu_millis: whole(amount(["requests.cpu", "cpu"]), 1_000_000),
            memory_bytes: whole(amount(["requests.memory", "memory"]), 1_000_000_000),
        }
    }

    /// As a map of canonical strings, the form stored and served.
    pub fn to_strings(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(r, q)| (r.0.clone(), q.to_string()))
            .collect()
    }
}

impl<'de> Deserialize<'de> for ResourceList {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<String, String>::deserialize(d)?;
        Self::parse(&raw, "").map_err(|errors| {
            serde::de::Error::custom(
                errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }
}

/// Checks that a namespace may hold `requested` when the tenant's other
/// namespaces hold `others`. A refusal names the resource, the amount asked
/// for and the amount still free.
pub fn check_allocation(
    budget: &ResourceList,
    others: &ResourceList,
    requested: &ResourceList,
    field: &str,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (resource, amount) in requested.iter() {
        let at = format!("{field}.{resource}");
        if resource.is_tenant_level() {
            errors.push(FieldError::new(
                at,
                "is a tenant-level limit and cannot be allocated to a namespace",
            ));
            continue;
        }
        let Some(limit) = budget.get(resource) else {
            errors.push(FieldError::new(
                at,
                format!("the tenant has no budget for {resource}; request quota for it first"),
            ));
            continue;
        };
        let used = others.get(resource).cloned().unwrap_or_else(Quantity::zero);
        let available = limit.checked_sub(&used).unwrap_or_else(Quantity::zero);
        if amount > &available {
            errors.push(FieldError::new(
                at,
                format!(
                    "requested {amount} but only {available} of the budget {limit} is available"
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

/// Checks that a new budget still covers what is allocated and how many
/// namespaces exist.
pub fn check_budget_covers(
    budget: &ResourceList,
    allocated: &ResourceList,
    namespace_count: usize,
    field: &str,
) -> Result<(), Vec<FieldError>> {
    let mut errors = Vec::new();
    for (resource, amount) in allocated.iter() {
        match budget.get(resource) {
            Some(limit) if limit >= amount => {}
            Some(limit) => errors.push(FieldError::new(
                format!("{field}.{resource}"),
                format!("{limit} is less than the {amount} already allocated to namespaces; lower the allocations first"),
            )),
            None => errors.push(FieldError::new(
                format!("{field}.{resource}"),
                format!("cannot be removed while {amount} is allocated to namespaces"),
            )),
        }
    }
    if let Some(max) = budget.get(&QuotaResource::namespaces())
        && !max.fits_count(namespace_count)
    {
        errors.push(FieldError::new(
            format!("{field}.{}", QuotaResource::NAMESPACES),
            format!("{max} is less than the {namespace_count} namespaces the tenant has"),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(pairs: &[(&str, &str)]) -> ResourceList {
        let raw = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ResourceList::parse(&raw, "budget").unwrap()
    }

    #[test]
    fn a_budget_demands_its_cpu_and_memory_requests_rounded_up() {
        let demand = list(&[
            ("requests.cpu", "1500m"),
            ("requests.memory", "2Gi"),
            ("pods", "9"),
        ])
        .cluster_demand();
        assert_eq!(demand.cpu_millis, 1500);
        assert_eq!(demand.memory_bytes, 2 << 30);
        let bare = list(&[("cpu", "0.0001"), ("memory", "1.5")]).cluster_demand();
        assert_eq!((bare.cpu_millis, bare.memory_bytes), (1, 2));
        assert_eq!(
            list(&[("limits.cpu", "4")]).cluster_demand(),
            ClusterDemand::default()
        );
    }

    #[test]
    fn resource_names_kubernetes_accepts_are_accepted() {
        for ok in [
            "requests.cpu",
            "limits.memory",
            "pods",
            "count/deployments.apps",
            "requests.nvidia.com/gpu",
            "gold.storageclass.storage.k8s.io/requests.storage",
            "hugepages-2Mi",
            "namespaces",
        ] {
            assert!(QuotaResource::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn unknown_or_malformed_resource_names_are_refused() {
        for bad in [
            "cpus",
            "requests.gpu",
            "",
            "count/",
            "/gpu",
            "Requests.CPU",
            "a b",
            "x/y/z",
        ] {
            assert!(QuotaResource::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn counts_must_be_whole_numbers() {
        let raw = [("pods".to_string(), "1500m".to_string())].into();
        let errors = ResourceList::parse(&raw, "budget").unwrap_err();
        assert_eq!(errors[0].field, "budget.pods");
    }

    #[test]
    fn negative_amounts_are_refused() {
        let raw = [("requests.cpu".to_string(), "-1".to_string())].into();
        let errors = ResourceList::parse(&raw, "budget").unwrap_err();
        assert_eq!(errors[0].rule, "must not be negative");
    }

    #[test]
    fn an_allocation_within_what_is_left_fits() {
        let budget = list(&[("requests.cpu", "4"), ("requests.memory", "8Gi")]);
        let others = list(&[("requests.cpu", "2500m")]);
        let asked = list(&[("requests.cpu", "1.5"), ("requests.memory", "8192Mi")]);
        assert!(check_allocation(&budget, &others, &asked, "allocations").is_ok());
    }

    #[test]
    fn an_allocation_over_what_is_left_names_resource_and_amounts() {
        let budget = list(&[("requests.cpu", "4")]);
        let others = list(&[("requests.cpu", "3")]);
        let asked = list(&[("requests.cpu", "1001m")]);
        let errors = check_allocation(&budget, &others, &asked, "allocations").unwrap_err();
        assert_eq!(errors[0].field, "allocations.requests.cpu");
        assert!(errors[0].rule.contains("1001m"), "{}", errors[0].rule);
        assert!(
            errors[0].rule.contains("only 1 of the budget 4"),
            "{}",
            errors[0].rule
        );
    }

    #[test]
    fn allocating_a_resource_without_budget_is_refused() {
        let errors = check_allocation(
            &list(&[]),
            &list(&[]),
            &list(&[("limits.cpu", "1")]),
            "allocations",
        )
        .unwrap_err();
        assert!(errors[0].rule.contains("no budget"));
    }

    #[test]
    fn a_budget_below_the_allocations_is_refused() {
        let allocated = list(&[("requests.cpu", "3")]);
        assert!(
            check_budget_covers(&list(&[("requests.cpu", "3")]), &allocated, 0, "budget").is_ok()
        );
        let errors = check_budget_covers(&list(&[("requests.cpu", "2")]), &allocated, 0, "budget")
            .unwrap_err();
        assert_eq!(errors[0].field, "budget.requests.cpu");
    }

    #[test]
    fn the_namespace_limit_counts_namespaces() {
        let budget = list(&[("namespaces", "2")]);
        assert!(check_budget_covers(&budget, &list(&[]), 2, "budget").is_ok());
        assert!(check_budget_covers(&budget, &list(&[]), 3, "budget").is_err());
    }
}
