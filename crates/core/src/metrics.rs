//! Process-wide metrics, rendered in the Prometheus text exposition format (0.0.4).
//!
//! Label values are `&'static str` only: an id, an object key or any string a tenant sent can
//! never become a label, so the number of series is fixed by the code, not by the traffic.
//! Values that are not compile-time strings (route templates) go through [`intern`], which
//! caps how many distinct values it hands out.
//!
//! [`metrics`] is the registry every crate records into. A process renders its own families
//! with [`Metrics::families`] plus whatever it computes at scrape time ([`FamilyBuilder`]), and
//! [`render`] writes them out, every sample labelled with the component (`api` or `worker`)
//! that produced it, so a server can merge in the families of the worker process it supervises
//! without two series colliding.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};

/// Buckets of request latencies, in seconds.
pub const HTTP_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// Buckets of job durations, in seconds.
pub const JOB_BUCKETS: &[f64] = &[
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];
/// Buckets of storage, database and scanner calls, in seconds.
pub const CALL_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Most distinct values [`intern`] hands out; later ones become `other`.
pub const MAX_INTERNED: usize = 512;

/// Turns a runtime string from a bounded set (route templates of the router, say) into a
/// `&'static str` label value. After [`MAX_INTERNED`] distinct values it answers `other`, so
/// even a misuse cannot grow the series without bound.
pub fn intern(s: &str) -> &'static str {
    static SET: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut set = SET
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if let Some(v) = set.get(s) {
        return v;
    }
    if set.len() >= MAX_INTERNED {
        return "other";
    }
    let v: &'static str = Box::leak(s.to_owned().into_boxed_str());
    set.insert(v);
    v
}

/// The kind of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Only goes up (resets when the process restarts).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Observations in buckets.
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One sample line: the family name plus `suffix` (`_bucket`, `_sum`, `_count` or nothing).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Appended to the family name.
    pub suffix: String,
    /// Label pairs, in order.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// A metric family with its samples: what [`render`] writes and what a worker process hands
/// to the server that supervises it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Family {
    /// Name (without suffixes).
    pub name: String,
    /// `# HELP` text.
    pub help: String,
    /// `# TYPE`.
    pub kind: Kind,
    /// Samples.
    pub samples: Vec<Sample>,
}

/// Builds a family computed at scrape time (queue depths, dependency checks, process stats).
#[derive(Debug)]
pub struct FamilyBuilder(Family);

impl FamilyBuilder {
    /// A gauge family.
    pub fn gauge(name: &str, help: &str) -> Self {
        Self::new(name, help, Kind::Gauge)
    }

    /// A counter family (for totals read from the OS, like CPU seconds).
    pub fn counter(name: &str, help: &str) -> Self {
        Self::new(name, help, Kind::Counter)
    }

    fn new(name: &str, help: &str, kind: Kind) -> Self {
        FamilyBuilder(Family {
            name: name.to_owned(),
            help: help.to_owned(),
            kind,
            samples: Vec::new(),
        })
    }

    /// Adds a sample; label values must be `'static` (see the module docs).
    pub fn sample(mut self, labels: &[(&str, &'static str)], value: f64) -> Self {
        self.0.samples.push(Sample {
            suffix: String::new(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value,
        });
        self
    }

    /// The family.
    pub fn build(self) -> Family {
        self.0
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn pairs<const N: usize>(
    names: &[&'static str; N],
    values: &[&'static str; N],
) -> Vec<(String, String)> {
    names
        .iter()
        .zip(values)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// The family of a counter or gauge: one sample per series, or a single 0 for an unlabelled
/// one never touched (so it is there from the first scrape).
fn scalar_family<const N: usize>(
    name: &str,
    help: &str,
    kind: Kind,
    labels: &[&'static str; N],
    values: &BTreeMap<[&'static str; N], f64>,
) -> Family {
    let samples = if N == 0 && values.is_empty() {
        vec![Sample {
            suffix: String::new(),
            labels: Vec::new(),
            value: 0.0,
        }]
    } else {
        values
            .iter()
            .map(|(l, v)| Sample {
                suffix: String::new(),
                labels: pairs(labels, l),
                value: *v,
            })
            .collect()
    };
    Family {
        name: name.to_owned(),
        help: help.to_owned(),
        kind,
        samples,
    }
}

/// A counter with `N` labels.
#[derive(Debug)]
pub struct Counter<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    values: Mutex<BTreeMap<[&'static str; N], f64>>,
}

impl<const N: usize> Counter<N> {
    /// A new counter; its name should end in `_total`.
    pub const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Counter {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds one.
    pub fn inc(&self, labels: [&'static str; N]) {
        self.add(labels, 1.0);
    }

    /// Adds `v` (negative values are ignored: counters only go up).
    pub fn add(&self, labels: [&'static str; N], v: f64) {
        if v >= 0.0 {
            *lock(&self.values).entry(labels).or_insert(0.0) += v;
        }
    }

    fn family(&self) -> Family {
        scalar_family(
            self.name,
            self.help,
            Kind::Counter,
            &self.labels,
            &lock(&self.values),
        )
    }
}

/// A gauge with `N` labels.
#[derive(Debug)]
pub struct Gauge<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    values: Mutex<BTreeMap<[&'static str; N], f64>>,
}

impl<const N: usize> Gauge<N> {
    /// A new gauge.
    pub const fn new(name: &'static str, help: &'static str, labels: [&'static str; N]) -> Self {
        Gauge {
            name,
            help,
            labels,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Adds `v` (may be negative).
    pub fn add(&self, labels: [&'static str; N], v: f64) {
        *lock(&self.values).entry(labels).or_insert(0.0) += v;
    }

    /// Sets the value.
    pub fn set(&self, labels: [&'static str; N], v: f64) {
        lock(&self.values).insert(labels, v);
    }

    fn family(&self) -> Family {
        scalar_family(
            self.name,
            self.help,
            Kind::Gauge,
            &self.labels,
            &lock(&self.values),
        )
    }
}

#[derive(Debug, Clone)]
struct HistData {
    /// Non-cumulative counts per bucket, plus one for `+Inf`.
    counts: Vec<u64>,
    sum: f64,
}

/// A histogram with `N` labels and fixed buckets.
#[derive(Debug)]
pub struct Histogram<const N: usize> {
    name: &'static str,
    help: &'static str,
    labels: [&'static str; N],
    buckets: &'static [f64],
    values: Mutex<BTreeMap<[&'static str; N], HistData>>,
}

impl<const N: usize> Histogram<N> {
    /// A new histogram; `buckets` must be sorted ascending (upper bounds, `+Inf` implied).
    pub const fn new(
        name: &'static str,
        help: &'static str,
        labels: [&'static str; N],
        buckets: &'static [f64],
    ) -> Self {
        Histogram {
            name,
            help,
            labels,
            buckets,
            values: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records one observation.
    pub fn observe(&self, labels: [&'static str; N], v: f64) {
        let idx = self
            .buckets
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.buckets.len());
        let mut values = lock(&self.values);
        let d = values.entry(labels).or_insert_with(|| HistData {
            counts: vec![0; self.buckets.len() + 1],
            sum: 0.0,
        });
        d.counts[idx] += 1;
        d.sum += v;
    }

    /// Number of observations of one series.
    #[cfg(test)]
    fn count(&self, labels: [&'static str; N]) -> u64 {
        lock(&self.values)
            .get(&labels)
            .map_or(0, |d| d.counts.iter().sum())
    }

    fn family(&self) -> Family {
        let values = lock(&self.values);
        let empty = HistData {
            counts: vec![0; self.buckets.len() + 1],
            sum: 0.0,
        };
        let series: Vec<(Vec<(String, String)>, &HistData)> = if N == 0 && values.is_empty() {
            vec![(Vec::new(), &empty)]
        } else {
            values
                .iter()
                .map(|(l, d)| (pairs(&self.labels, l), d))
                .collect()
        };
        let mut samples = Vec::new();
        for (labels, d) in series {
            let mut cumulative = 0u64;
            for (i, c) in d.counts.iter().enumerate() {
                cumulative += c;
                let le = self
                    .buckets
                    .get(i)
                    .map_or_else(|| "+Inf".to_owned(), |b| format_value(*b));
                let mut l = labels.clone();
                l.push(("le".to_owned(), le));
                samples.push(Sample {
                    suffix: "_bucket".into(),
                    labels: l,
                    value: cumulative as f64,
                });
            }
            samples.push(Sample {
                suffix: "_sum".into(),
                labels: labels.clone(),
                value: d.sum,
            });
            samples.push(Sample {
                suffix: "_count".into(),
                labels,
                value: cumulative as f64,
            });
        }
        Family {
            name: self.name.to_owned(),
            help: self.help.to_owned(),
            kind: Kind::Histogram,
            samples,
        }
    }
}

/// Every metric recorded in-process. Families computed at scrape time (queue depths from the
/// database, dependency checks, process statistics) are built by the `/metrics` handler.
#[derive(Debug)]
pub struct Metrics {
    /// HTTP requests by route template, method and status class.
    pub http_requests: Counter<3>,
    /// HTTP request latency by route template, method and status class.
    pub http_duration: Histogram<3>,
    /// Requests being served, by route template.
    pub http_in_flight: Gauge<1>,
    /// Job attempt durations by job type and outcome.
    pub job_duration: Histogram<2>,
    /// Job attempts by job type and outcome.
    pub job_attempts: Counter<2>,
    /// Upload bytes accepted by source.
    pub upload_bytes: Counter<1>,
    /// Uploads by source and outcome.
    pub uploads: Counter<2>,
    /// Rejected uploads by reason (an error code).
    pub upload_rejections: Counter<1>,
    /// Malware scans by result.
    pub scan_results: Counter<1>,
    /// Malware scan durations.
    pub scan_duration: Histogram<0>,
    /// Object-storage calls by operation.
    pub storage_duration: Histogram<1>,
    /// Failed object-storage calls by operation.
    pub storage_errors: Counter<1>,
    /// Database calls by operation.
    pub db_duration: Histogram<1>,
    /// Failed database calls by operation.
    pub db_errors: Counter<1>,
    /// Webhook delivery attempts by outcome.
    pub webhook_deliveries: Counter<1>,
}

impl Metrics {
    const fn new() -> Self {
        Metrics {
            http_requests: Counter::new(
                "photo_api_http_requests_total",
                "HTTP requests served, by route template, method and status class.",
                ["route", "method", "status_class"],
            ),
            http_duration: Histogram::new(
                "photo_api_http_request_duration_seconds",
                "HTTP request latency until the response head, by route template, method and status class.",
                ["route", "method", "status_class"],
                HTTP_BUCKETS,
            ),
            http_in_flight: Gauge::new(
                "photo_api_http_requests_in_flight",
                "HTTP requests being handled, by route template.",
                ["route"],
            ),
            job_duration: Histogram::new(
                "photo_api_job_duration_seconds",
                "Duration of job attempts, by job type and outcome (completed, failed, retried, cancelled).",
                ["job_type", "outcome"],
                JOB_BUCKETS,
            ),
            job_attempts: Counter::new(
                "photo_api_job_attempts_total",
                "Job attempts run, by job type and outcome.",
                ["job_type", "outcome"],
            ),
            upload_bytes: Counter::new(
                "photo_api_upload_bytes_total",
                "Bytes of uploads received, by source (presigned, stream, file).",
                ["source"],
            ),
            uploads: Counter::new(
                "photo_api_uploads_total",
                "Uploads checked, by source and outcome (accepted, rejected).",
                ["source", "outcome"],
            ),
            upload_rejections: Counter::new(
                "photo_api_upload_rejections_total",
                "Rejected uploads, by reason (a stable error code).",
                ["reason"],
            ),
            scan_results: Counter::new(
                "photo_api_scan_results_total",
                "Malware scans, by result (clean, infected, error).",
                ["result"],
            ),
            scan_duration: Histogram::new(
                "photo_api_scan_duration_seconds",
                "Duration of malware scans.",
                [],
                CALL_BUCKETS,
            ),
            storage_duration: Histogram::new(
                "photo_api_storage_operation_duration_seconds",
                "Duration of object-storage calls, by operation.",
                ["operation"],
                CALL_BUCKETS,
            ),
            storage_errors: Counter::new(
                "photo_api_storage_errors_total",
                "Failed object-storage calls (not counting not-found and client-side body errors), by operation.",
                ["operation"],
            ),
            db_duration: Histogram::new(
                "photo_api_db_operation_duration_seconds",
                "Duration of database calls, by operation.",
                ["operation"],
                CALL_BUCKETS,
            ),
            db_errors: Counter::new(
                "photo_api_db_errors_total",
                "Failed database calls, by operation.",
                ["operation"],
            ),
            webhook_deliveries: Counter::new(
                "photo_api_webhook_deliveries_total",
                "Webhook delivery attempts, by outcome (delivered, failed, gave_up).",
                ["outcome"],
            ),
        }
    }

    /// Every family recorded in-process, with their current samples.
    pub fn families(&self) -> Vec<Family> {
        vec![
            self.http_requests.family(),
            self.http_duration.family(),
            self.http_in_flight.family(),
            self.job_duration.family(),
            self.job_attempts.family(),
            self.upload_bytes.family(),
            self.uploads.family(),
            self.upload_rejections.family(),
            self.scan_results.family(),
            self.scan_duration.family(),
            self.storage_duration.family(),
            self.storage_errors.family(),
            self.db_duration.family(),
            self.db_errors.family(),
            self.webhook_deliveries.family(),
        ]
    }
}

/// The process's registry.
pub fn metrics() -> &'static Metrics {
    static M: Metrics = Metrics::new();
    &M
}

/// A float as the exposition format writes it.
fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        format!("{v}")
    }
}

fn escape_label(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

fn escape_help(v: &str, out: &mut String) {
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// Writes the families of every source in the text format, each sample labelled
/// `component="<source>"`. Families of the same name from several sources are written once
/// (one `# HELP`/`# TYPE`), their samples together.
pub fn render(sources: &[(&str, Vec<Family>)]) -> String {
    /// A family and its samples from every source, each with its component.
    type Merged<'a> = (&'a Family, Vec<(&'a str, &'a Sample)>);
    let mut merged: BTreeMap<&str, Merged<'_>> = BTreeMap::new();
    for (component, families) in sources {
        for f in families {
            let entry = merged.entry(f.name.as_str()).or_insert((f, Vec::new()));
            if entry.0.kind != f.kind {
                continue; // a worker of another version; never mix types in one family
            }
            entry.1.extend(f.samples.iter().map(|s| (*component, s)));
        }
    }
    let mut out = String::with_capacity(16 * 1024);
    for (name, (f, samples)) in merged {
        out.push_str("# HELP ");
        out.push_str(name);
        out.push(' ');
        escape_help(&f.help, &mut out);
        out.push('\n');
        let _ = writeln!(out, "# TYPE {name} {}", f.kind.as_str());
        for (component, s) in samples {
            out.push_str(name);
            out.push_str(&s.suffix);
            out.push_str("{component=\"");
            escape_label(component, &mut out);
            out.push('"');
            for (k, v) in &s.labels {
                out.push(',');
                out.push_str(k);
                out.push_str("=\"");
                escape_label(v, &mut out);
                out.push('"');
            }
            out.push_str("} ");
            out.push_str(&format_value(s.value));
            out.push('\n');
        }
    }
    out
}

/// The class of an HTTP status: `2xx`, `4xx`, …
pub fn status_class(status: u16) -> &'static str {
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative_and_count_matches() {
        let h: Histogram<1> = Histogram::new("t_seconds", "t", ["op"], &[0.1, 1.0]);
        h.observe(["a"], 0.05);
        h.observe(["a"], 0.5);
        h.observe(["a"], 5.0);
        let text = render(&[("api", vec![h.family()])]);
        assert!(
            text.contains("t_seconds_bucket{component=\"api\",op=\"a\",le=\"0.1\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{component=\"api\",op=\"a\",le=\"1\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_bucket{component=\"api\",op=\"a\",le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_count{component=\"api\",op=\"a\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("t_seconds_sum{component=\"api\",op=\"a\"} 5.55\n"),
            "{text}"
        );
        assert_eq!(h.count(["a"]), 3);
    }

    #[test]
    fn sources_merge_into_one_family() {
        let c: Counter<1> = Counter::new("c_total", "help \\ with\nnewline", ["k"]);
        c.inc(["x"]);
        let text = render(&[("api", vec![c.family()]), ("worker", vec![c.family()])]);
        assert_eq!(text.matches("# TYPE c_total counter").count(), 1, "{text}");
        assert!(
            text.contains("# HELP c_total help \\\\ with\\nnewline\n"),
            "{text}"
        );
        assert!(text.contains("c_total{component=\"api\",k=\"x\"} 1\n"));
        assert!(text.contains("c_total{component=\"worker\",k=\"x\"} 1\n"));
    }

    #[test]
    fn unlabelled_families_show_zero_before_use() {
        let g: Gauge<0> = Gauge::new("g", "g", []);
        let text = render(&[("api", vec![g.family()])]);
        assert!(text.contains("g{component=\"api\"} 0\n"), "{text}");
        g.add([], 2.0);
        g.add([], -1.0);
        assert!(render(&[("api", vec![g.family()])]).contains("g{component=\"api\"} 1\n"));
    }

    #[test]
    fn intern_is_bounded_and_stable() {
        let a = intern("/jobs/{job_id}");
        assert!(std::ptr::eq(a, intern("/jobs/{job_id}")));
        for i in 0..(MAX_INTERNED + 10) {
            let v = intern(&format!("/x/{i}"));
            assert!(v == format!("/x/{i}") || v == "other");
        }
        assert_eq!(intern("/never-seen-before"), "other");
    }

    #[test]
    fn label_values_are_escaped() {
        let f = FamilyBuilder::gauge("g", "g")
            .sample(&[("v", "a\"b\\c\nd")], 1.0)
            .build();
        assert!(
            render(&[("api", vec![f])]).contains("g{component=\"api\",v=\"a\\\"b\\\\c\\nd\"} 1\n")
        );
    }
}
