//! OpenMetrics text → Prometheus text format 0.0.4.
//!
//! `prometheus-client` writes OpenMetrics only. The two differ, for what we register, in
//! three ways: a counter family is named without `_total` in OpenMetrics and with it in
//! Prometheus text (so HELP/TYPE must name the sample), `# UNIT` lines do not exist in
//! Prometheus text, and OpenMetrics ends with `# EOF`.

use std::collections::HashSet;

/// Rewrites an OpenMetrics exposition as Prometheus text.
pub fn from_openmetrics(openmetrics: &str) -> String {
    let counters: HashSet<&str> =
        openmetrics.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|rest| rest.strip_suffix(" counter")).collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        match metadata(line) {
            Some((kind, family, rest)) if counters.contains(family) => {
                out.push_str(&format!("# {kind} {family}_total{rest}"));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// Splits `# HELP name rest` / `# TYPE name rest` into (kind, name, " rest").
fn metadata(line: &str) -> Option<(&str, &str, &str)> {
    let rest = line.strip_prefix("# ")?;
    let (kind, rest) = rest.split_once(' ')?;
    if kind != "HELP" && kind != "TYPE" {
        return None;
    }
    let end = rest.find(' ').unwrap_or(rest.len());
    Some((kind, &rest[..end], &rest[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_named_by_their_sample_and_openmetrics_only_lines_go() {
        let om = "# HELP certctl_x Things.\n# TYPE certctl_x counter\ncertctl_x_total 3\n\
                  # HELP certctl_g A gauge.\n# TYPE certctl_g gauge\n# UNIT certctl_g seconds\ncertctl_g 1\n# EOF\n";
        assert_eq!(
            from_openmetrics(om),
            "# HELP certctl_x_total Things.\n# TYPE certctl_x_total counter\ncertctl_x_total 3\n\
             # HELP certctl_g A gauge.\n# TYPE certctl_g gauge\ncertctl_g 1\n"
        );
    }
}
