//! Reading the engine's Prometheus histograms, so a load test can report what the engine
//! itself saw beside what its clients saw.

use crate::target::Target;

/// One histogram's cumulative bucket counts at one moment: (upper bound, count).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Buckets(Vec<(f64, f64)>);

impl Buckets {
    /// The buckets of `series` (without `_bucket`) whose labels contain `label` (a
    /// `key="value"` pair, or "" for any), summed over matching label sets.
    pub fn parse(text: &str, series: &str, label: &str) -> Self {
        let prefix = format!("{series}_bucket{{");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&prefix) else {
                continue;
            };
            let Some((labels, value)) = rest.rsplit_once("} ") else {
                continue;
            };
            if !labels.contains(label) {
                continue;
            }
            let Some(le) = labels
                .split(',')
                .find_map(|kv| kv.strip_prefix("le=\""))
                .map(|v| v.trim_end_matches('"'))
            else {
                continue;
            };
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap_or(f64::NAN)
            };
            let Ok(count) = value.trim().parse::<f64>() else {
                continue;
            };
            match out.iter_mut().find(|(b, _)| *b == le) {
                Some((_, c)) => *c += count,
                None => out.push((le, count)),
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        Self(out)
    }

    /// What was added between `earlier` and `self`.
    pub fn since(&self, earlier: &Buckets) -> Buckets {
        Buckets(
            self.0
                .iter()
                .map(|(le, c)| {
                    let before = earlier
                        .0
                        .iter()
                        .find(|(b, _)| b == le)
                        .map_or(0.0, |(_, c)| *c);
                    (*le, c - before)
                })
                .collect(),
        )
    }

    /// Samples counted.
    pub fn count(&self) -> f64 {
        self.0.last().map_or(0.0, |(_, c)| *c)
    }

    /// The upper bound of the bucket holding quantile `q` (an upper estimate, as
    /// Prometheus buckets allow), or none without samples.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.count();
        if total <= 0.0 {
            return None;
        }
        self.0
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map(|(le, _)| *le)
    }
}

/// The sum of the samples of `series` (exactly that name) whose labels contain `label`
/// (a `key="value"` pair, or "" for any): a counter or gauge over its label sets.
pub fn sample_sum(text: &str, series: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| {
            l.strip_prefix(series)
                .is_some_and(|rest| rest.starts_with([' ', '{']) && rest.contains(label))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The engine's /metrics text.
pub async fn metrics(target: &Target) -> anyhow::Result<String> {
    let r = wire::client::http_api::request(target.http, "GET", "/metrics", &[], None).await?;
    Ok(r.text)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
x_seconds_bucket{type=\"a\",le=\"0.001\"} 5
x_seconds_bucket{type=\"a\",le=\"0.01\"} 9
x_seconds_bucket{type=\"a\",le=\"+Inf\"} 10
x_seconds_bucket{type=\"b\",le=\"0.001\"} 100
x_seconds_bucket{type=\"b\",le=\"0.01\"} 100
x_seconds_bucket{type=\"b\",le=\"+Inf\"} 100
";

    #[test]
    fn quantiles_come_from_the_matching_label_set() {
        let a = Buckets::parse(TEXT, "x_seconds", "type=\"a\"");
        assert_eq!(a.count(), 10.0);
        assert_eq!(a.quantile(0.5), Some(0.001));
        assert_eq!(a.quantile(0.9), Some(0.01));
        assert_eq!(a.quantile(0.99), Some(f64::INFINITY));
        let all = Buckets::parse(TEXT, "x_seconds", "");
        assert_eq!(all.count(), 110.0);
        assert_eq!(all.quantile(0.5), Some(0.001));
    }

    #[test]
    fn sums_take_the_exact_series_and_matching_labels() {
        let text = "\
x_total{type=\"a\"} 2
x_total{type=\"b\"} 3
x_total_other 100
x 7
";
        assert_eq!(sample_sum(text, "x_total", ""), 5.0);
        assert_eq!(sample_sum(text, "x_total", "type=\"b\""), 3.0);
        assert_eq!(sample_sum(text, "x", ""), 7.0);
    }

    #[test]
    fn a_window_subtracts_what_came_before() {
        let before = Buckets::parse(TEXT, "x_seconds", "type=\"b\"");
        let after = Buckets::parse(TEXT, "x_seconds", "");
        let window = after.since(&before);
        assert_eq!(window, Buckets::parse(TEXT, "x_seconds", "type=\"a\""));
        assert_eq!(Buckets::default().quantile(0.5), None);
    }
}
