//! `loadgen compare BASE.json NEW.json --max-regression 10%`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Ok,
    Improved,
    Regression,
    Info,
    Missing,
}

#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub unit: String,
    pub better: String,
    pub base: Option<f64>,
    pub new: Option<f64>,
    /// positive = worse, in percent of the base
    pub worse_pct: Option<f64>,
    pub verdict: Verdict,
}

/// A bad `--max-regression`.
#[derive(Debug, Clone, PartialEq)]
pub enum PctError {
    NotANumber(String),
    Negative(String),
}

impl std::fmt::Display for PctError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PctError::NotANumber(s) => write!(f, "bad percentage {s:?}"),
            PctError::Negative(s) => write!(f, "negative percentage {s:?}"),
        }
    }
}

impl std::error::Error for PctError {}

pub fn parse_pct(s: &str) -> Result<f64, PctError> {
    let t = s.trim().trim_end_matches('%');
    let v: f64 = t.parse().map_err(|_| PctError::NotANumber(s.to_string()))?;
    if v < 0.0 {
        return Err(PctError::Negative(s.to_string()));
    }
    Ok(v)
}

/// A metric of a report: (value, unit, better). The value is None when it is `null` (or not a
/// number): missing, never 0.
fn metric(v: &Value, name: &str) -> Option<(Option<f64>, String, String)> {
    let m = v.get("metrics")?.get(name)?.as_object()?;
    Some((
        m.get("value").and_then(Value::as_f64),
        m.get("unit").and_then(Value::as_str).unwrap_or("").to_string(),
        m.get("better").and_then(Value::as_str).unwrap_or("info").to_string(),
    ))
}

/// Compare every metric of `base` and `new`. A metric regresses when it is worse by more than
/// `max_pct` percent of the base ("lower" is better: new > base; "higher": new < base).
/// A lower-is-better metric whose base is 0 (losses, failures) regresses on any increase.
/// Millisecond metrics whose absolute change is below `min_abs_ms` never regress.
/// Metrics whose name contains one of `ignore` are shown but never gate (e.g. `_max_ms`: the
/// maximum of a single short run is noise). A metric absent or `null` on either side is
/// "missing" (never compared as 0).
pub fn compare(base: &Value, new: &Value, max_pct: f64, min_abs_ms: f64) -> (Vec<Row>, bool) {
    compare_ignoring(base, new, max_pct, min_abs_ms, &[])
}

/// [`compare`] with metrics to report but not gate on.
pub fn compare_ignoring(base: &Value, new: &Value, max_pct: f64, min_abs_ms: f64, ignore: &[String]) -> (Vec<Row>, bool) {
    let mut names: Vec<String> = vec![];
    for v in [base, new] {
        if let Some(m) = v.get("metrics").and_then(Value::as_object) {
            for k in m.keys() {
                if !names.contains(k) {
                    names.push(k.clone());
                }
            }
        }
    }
    names.sort();
    let mut rows = vec![];
    let mut regressed = false;
    for name in names {
        let b = metric(base, &name);
        let n = metric(new, &name);
        let (unit, mut better) = match (&b, &n) {
            (_, Some((_, u, bt))) | (Some((_, u, bt)), None) => (u.clone(), bt.clone()),
            _ => (String::new(), "info".to_string()), // not a metric object on either side
        };
        if ignore.iter().any(|i| name.contains(i.as_str())) {
            better = "info".into();
        }
        let mut row = Row {
            name: name.clone(),
            unit: unit.clone(),
            better: better.clone(),
            base: b.as_ref().and_then(|x| x.0),
            new: n.as_ref().and_then(|x| x.0),
            worse_pct: None,
            verdict: Verdict::Info,
        };
        match (row.base, row.new) {
            (Some(bv), Some(nv)) => {
                let worse_by = match better.as_str() {
                    "lower" => nv - bv,
                    "higher" => bv - nv,
                    _ => {
                        rows.push(row);
                        continue;
                    }
                };
                let pct = if bv.abs() > f64::EPSILON {
                    worse_by / bv.abs() * 100.0
                } else if worse_by > 0.0 {
                    f64::INFINITY
                } else {
                    0.0
                };
                row.worse_pct = Some(pct);
                let below_floor = unit == "ms" && worse_by.abs() < min_abs_ms;
                row.verdict = if pct > max_pct && !below_floor {
                    regressed = true;
                    Verdict::Regression
                } else if pct < -max_pct && !below_floor {
                    Verdict::Improved
                } else {
                    Verdict::Ok
                };
            }
            _ => row.verdict = Verdict::Missing,
        }
        rows.push(row);
    }
    (rows, regressed)
}

pub fn render(rows: &[Row], base_label: &str, new_label: &str) -> String {
    let fmt = |v: Option<f64>| match v {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) => format!("{x:.3}"),
        None => "-".into(),
    };
    let mut out = format!(
        "{:<40} {:>8} {:>7} {:>14} {:>14} {:>9}  {}\n",
        "metric", "unit", "better", base_label, new_label, "worse%", "verdict"
    );
    for r in rows {
        let pct = match r.worse_pct {
            Some(p) if p.is_infinite() => "inf".to_string(),
            Some(p) => format!("{p:+.1}"),
            None => "-".into(),
        };
        let v = match r.verdict {
            Verdict::Ok => "ok",
            Verdict::Improved => "improved",
            Verdict::Regression => "REGRESSION",
            Verdict::Info => "",
            Verdict::Missing => "missing",
        };
        out.push_str(&format!(
            "{:<40} {:>8} {:>7} {:>14} {:>14} {:>9}  {}\n",
            r.name,
            r.unit,
            r.better,
            fmt(r.base),
            fmt(r.new),
            pct,
            v
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rep(lat: f64, rate: f64, lost: f64) -> Value {
        json!({"schema_version": 1, "metrics": {
            "delivery_p99_ms": {"value": lat, "unit": "ms", "better": "lower"},
            "deliveries_per_s": {"value": rate, "unit": "1/s", "better": "higher"},
            "lost": {"value": lost, "unit": "count", "better": "lower"},
            "loadgen_cpu_s": {"value": 1.0, "unit": "s", "better": "info"}
        }})
    }

    fn verdict(rows: &[Row], name: &str) -> Verdict {
        rows.iter().find(|r| r.name == name).unwrap().verdict.clone()
    }

    #[test]
    fn directions() {
        let base = rep(10.0, 1000.0, 0.0);
        // latency up 20%: regression; throughput down 5%: ok
        let (rows, bad) = compare(&base, &rep(12.0, 950.0, 0.0), 10.0, 0.0);
        assert!(bad);
        assert_eq!(verdict(&rows, "delivery_p99_ms"), Verdict::Regression);
        assert_eq!(verdict(&rows, "deliveries_per_s"), Verdict::Ok);
        assert_eq!(verdict(&rows, "loadgen_cpu_s"), Verdict::Info);
        // throughput down 20%: regression; latency down: improved
        let (rows, bad) = compare(&base, &rep(5.0, 800.0, 0.0), 10.0, 0.0);
        assert!(bad);
        assert_eq!(verdict(&rows, "deliveries_per_s"), Verdict::Regression);
        assert_eq!(verdict(&rows, "delivery_p99_ms"), Verdict::Improved);
        // throughput up is never a regression
        let (_, bad) = compare(&base, &rep(10.5, 5000.0, 0.0), 10.0, 0.0);
        assert!(!bad);
    }

    #[test]
    fn zero_base_and_floor() {
        let base = rep(0.2, 1000.0, 0.0);
        // any loss where there was none is a regression
        let (rows, bad) = compare(&base, &rep(0.2, 1000.0, 1.0), 10.0, 0.0);
        assert!(bad);
        assert_eq!(verdict(&rows, "lost"), Verdict::Regression);
        // +50% of 0.2 ms is under a 0.5 ms noise floor
        let (_, bad) = compare(&base, &rep(0.3, 1000.0, 0.0), 10.0, 0.5);
        assert!(!bad);
        let (_, bad) = compare(&base, &rep(0.3, 1000.0, 0.0), 10.0, 0.0);
        assert!(bad);
    }

    #[test]
    fn ignored_metrics_do_not_gate() {
        let base = rep(10.0, 100.0, 0.0);
        let new = rep(100.0, 100.0, 0.0);
        let (_, regressed) = compare(&base, &new, 10.0, 0.0);
        assert!(regressed);
        let (rows, regressed) = compare_ignoring(&base, &new, 10.0, 0.0, &["delivery_p99".to_string()]);
        assert!(!regressed, "{rows:?}");
    }

    #[test]
    fn missing_metrics_and_pct_parse() {
        let base = rep(1.0, 1.0, 0.0);
        let new = json!({"metrics": {"other": {"value": 1.0, "unit": "ms", "better": "lower"}}});
        let (rows, bad) = compare(&base, &new, 10.0, 0.0);
        assert!(!bad);
        assert_eq!(verdict(&rows, "other"), Verdict::Missing);
        assert_eq!(parse_pct("10%").unwrap(), 10.0);
        assert_eq!(parse_pct("2.5").unwrap(), 2.5);
        assert_eq!(parse_pct("x"), Err(PctError::NotANumber("x".into())));
        assert_eq!(parse_pct("-1%").unwrap_err().to_string(), "negative percentage \"-1%\"");
        assert!(render(&rows, "base", "new").contains("missing"));
    }

    #[test]
    fn null_values_are_missing_not_zero() {
        let m = |v: Value| json!({"metrics": {"delivery_p99_ms": {"value": v, "unit": "ms", "better": "lower"},
                                              "lost": {"value": 0.0, "unit": "count", "better": "lower"}}});
        // a null base is not 0: the new value is not an "infinite" regression against it
        let (rows, bad) = compare(&m(Value::Null), &m(json!(5.0)), 10.0, 0.0);
        assert!(!bad, "{rows:?}");
        assert_eq!(verdict(&rows, "delivery_p99_ms"), Verdict::Missing);
        assert_eq!(rows.iter().find(|r| r.name == "delivery_p99_ms").unwrap().base, None);
        // a null new value is not an improvement to 0
        let (rows, bad) = compare(&m(json!(5.0)), &m(Value::Null), 10.0, 0.0);
        assert!(!bad);
        assert_eq!(verdict(&rows, "delivery_p99_ms"), Verdict::Missing);
        // null on both sides
        let (rows, bad) = compare(&m(Value::Null), &m(Value::Null), 10.0, 0.0);
        assert!(!bad);
        assert_eq!(verdict(&rows, "delivery_p99_ms"), Verdict::Missing);
        assert_eq!(verdict(&rows, "lost"), Verdict::Ok);
        assert!(render(&rows, "base", "new").contains("missing"));
    }
}
