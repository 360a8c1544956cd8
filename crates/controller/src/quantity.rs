//! Kubernetes resource quantities: the canonical forms the translation writes, and a numeric
//! reading used to compare what was applied with what the API server stored (it rewrites
//! `1024Mi` as `1Gi`).

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A byte count in the largest binary unit that divides it (`536870912` → `512Mi`).
pub fn bytes(n: i64) -> Quantity {
    for (unit, size) in [
        ("Ei", 1i64 << 60),
        ("Pi", 1 << 50),
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ] {
        if n >= size && n % size == 0 {
            return Quantity(format!("{}{unit}", n / size));
        }
    }
    Quantity(n.to_string())
}

/// Milli-CPUs as Kubernetes writes them (`1500` → `1500m`, `2000` → `2`).
pub fn millicpu(m: i64) -> Quantity {
    if m % 1000 == 0 {
        Quantity((m / 1000).to_string())
    } else {
        Quantity(format!("{m}m"))
    }
}

/// The value of a quantity string in base units, or `None` when it is not a quantity.
pub fn parse(s: &str) -> Option<f64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => 10f64.powi(exp[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// Whether two quantity strings denote the same amount.
pub fn same(a: &str, b: &str) -> bool {
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => (x - y).abs() <= f64::EPSILON * x.abs().max(y.abs()) * 4.0,
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_the_largest_exact_binary_unit() {
        assert_eq!(bytes(536_870_912).0, "512Mi");
        assert_eq!(bytes(1 << 30).0, "1Gi");
        assert_eq!(bytes(1000).0, "1000");
        assert_eq!(bytes(1536 * 1024).0, "1536Ki");
    }

    #[test]
    fn cpus_are_whole_when_possible() {
        assert_eq!(millicpu(1500).0, "1500m");
        assert_eq!(millicpu(2000).0, "2");
    }

    #[test]
    fn equal_amounts_in_different_spellings_are_the_same() {
        assert!(same("1024Mi", "1Gi"));
        assert!(same("0.5", "500m"));
        assert!(same("1e3", "1k"));
        assert!(!same("1Gi", "1G"));
        assert_eq!(parse("ten"), None);
        assert!(parse("1Gi").is_some() && parse("1.5").is_some());
    }
}
