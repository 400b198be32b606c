//! Presets: named lists of jobs queued automatically when an upload completes ready (eager
//! variants). Configured with `PHOTO_API_PRESETS` (JSON) and `PHOTO_API_DEFAULT_PRESET`; an
//! upload picks one at `POST /uploads/init` (`preset`), lists its own (`jobs`), or gets the
//! default.

use std::collections::BTreeMap;

use photo_core::{JobSpec, JobType};
use serde::Deserialize;

/// Most jobs one upload may queue on completion (a preset's or its own list).
pub const MAX_EAGER_JOBS: usize = 8;
/// Most presets configured.
pub const MAX_PRESETS: usize = 32;
/// Longest preset name.
pub const MAX_PRESET_NAME: usize = 64;

/// One job of a preset or of an init request's `jobs`: a job type and its parameters, as in
/// `POST /jobs`.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EagerJob {
    /// `thumbnail`, `transform`, `variants` or `analyze`.
    #[schema(example = "variants")]
    pub job_type: String,
    /// Its parameters (as for `POST /jobs`).
    #[serde(default)]
    #[schema(value_type = Object, example = json!({"variants": [{"name": "small", "width": 320, "format": "webp"}]}))]
    pub params: serde_json::Value,
}

/// Why a preset or job list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidPreset(pub String);

/// Checks a list of eager jobs: 1..=[`MAX_EAGER_JOBS`] (0 allowed when `allow_empty`), each a
/// known job type with valid parameters.
pub fn parse_jobs(jobs: Vec<EagerJob>, allow_empty: bool) -> Result<Vec<JobSpec>, InvalidPreset> {
    if jobs.len() > MAX_EAGER_JOBS || (jobs.is_empty() && !allow_empty) {
        return Err(InvalidPreset(format!(
            "a job list holds {} to {MAX_EAGER_JOBS} jobs, got {}",
            usize::from(!allow_empty),
            jobs.len()
        )));
    }
    jobs.into_iter()
        .enumerate()
        .map(|(i, j)| {
            let t = JobType::parse(&j.job_type).ok_or_else(|| {
                InvalidPreset(format!(
                    "job {i}: unknown job_type {:?}; use thumbnail, transform, variants or analyze",
                    j.job_type.chars().take(64).collect::<String>()
                ))
            })?;
            JobSpec::parse(t, j.params).map_err(|e| InvalidPreset(format!("job {i}: {e}")))
        })
        .collect()
}

/// Whether `name` is a valid preset name.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_PRESET_NAME
        && name
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_' || c == b'-')
}

/// The configured presets, validated at start-up.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Presets {
    by_name: BTreeMap<String, Vec<JobSpec>>,
    default: Option<String>,
}

impl Presets {
    /// Parses `PHOTO_API_PRESETS` (a JSON object: preset name → list of `{job_type, params}`)
    /// and checks `default` names one of them.
    pub fn parse(json: Option<&str>, default: Option<&str>) -> Result<Self, InvalidPreset> {
        let raw: BTreeMap<String, Vec<EagerJob>> = match json.map(str::trim) {
            None | Some("") => BTreeMap::new(),
            Some(s) => serde_json::from_str(s).map_err(|e| {
                InvalidPreset(format!(
                    "expected a JSON object of preset name → [{{\"job_type\", \"params\"}}, …]: {e}"
                ))
            })?,
        };
        if raw.len() > MAX_PRESETS {
            return Err(InvalidPreset(format!(
                "at most {MAX_PRESETS} presets, got {}",
                raw.len()
            )));
        }
        let mut by_name = BTreeMap::new();
        for (name, jobs) in raw {
            if !valid_name(&name) {
                return Err(InvalidPreset(format!(
                    "preset name {name:?}: use 1 to {MAX_PRESET_NAME} of a-z, 0-9, '_' and '-'"
                )));
            }
            let specs = parse_jobs(jobs, false)
                .map_err(|e| InvalidPreset(format!("preset {name:?}: {e}")))?;
            by_name.insert(name, specs);
        }
        let default = default.map(str::trim).filter(|d| !d.is_empty());
        if let Some(d) = default
            && !by_name.contains_key(d)
        {
            return Err(InvalidPreset(format!(
                "the default preset {d:?} is not one of the configured presets"
            )));
        }
        Ok(Presets {
            by_name,
            default: default.map(str::to_owned),
        })
    }

    /// The jobs of the preset `name`.
    pub fn get(&self, name: &str) -> Option<&[JobSpec]> {
        self.by_name.get(name).map(Vec::as_slice)
    }

    /// The jobs of the default preset (none when there is no default).
    pub fn default_jobs(&self) -> &[JobSpec] {
        self.default
            .as_deref()
            .and_then(|d| self.get(d))
            .unwrap_or_default()
    }

    /// The configured preset names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_refuse() {
        let ok = Presets::parse(
            Some(
                r#"{"web": [{"job_type": "variants", "params": {"variants": [{"name": "s", "width": 8}]}},
                            {"job_type": "analyze"}]}"#,
            ),
            Some("web"),
        );
        let Ok(p) = ok else { panic!("{ok:?}") };
        assert_eq!(p.default_jobs().len(), 2);
        assert_eq!(p.get("web").map(<[_]>::len), Some(2));
        assert!(p.get("nope").is_none());
        assert_eq!(Presets::parse(None, None), Ok(Presets::default()));
        for (json, default) in [
            (r#"{"web": []}"#, None),
            (r#"{"Web": [{"job_type": "analyze"}]}"#, None),
            (r#"{"web": [{"job_type": "sepia"}]}"#, None),
            (
                r#"{"web": [{"job_type": "thumbnail", "params": {"width": 0, "height": 1}}]}"#,
                None,
            ),
            (r#"{"web": [{"job_type": "analyze"}]}"#, Some("mobile")),
            (r#"[1, 2]"#, None),
            (r#"{"web": [{"job_type": "analyze", "extra": 1}]}"#, None),
        ] {
            assert!(Presets::parse(Some(json), default).is_err(), "{json}");
        }
        let nine = format!(
            "{{\"x\": [{}]}}",
            [r#"{"job_type":"analyze"}"#; 9].join(",")
        );
        assert!(Presets::parse(Some(&nine), None).is_err());
    }
}
