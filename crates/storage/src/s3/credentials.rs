//! The standard AWS credential chain, in order: keys given in the configuration; the environment
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`); the shared profile files
//! (`~/.aws/credentials`, then `~/.aws/config`, profile `AWS_PROFILE` or `default`); and last a
//! role (web identity, ECS/EKS task, EC2 instance), which object_store's builder resolves when
//! it is given no static keys. object_store does not read the profile files, hence the small
//! INI reader here.

use std::collections::HashMap;
use std::path::PathBuf;

use super::sigv4::Credentials;

/// Where static credentials were found (for logs; never the secret itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialSource {
    /// Given in the configuration.
    Config,
    /// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`.
    Environment,
    /// `~/.aws/credentials` (or `AWS_SHARED_CREDENTIALS_FILE`).
    CredentialsFile,
    /// `~/.aws/config` (or `AWS_CONFIG_FILE`).
    ConfigFile,
}

/// Why the chain failed before reaching the role step.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChainError {
    /// Only one half of a key pair was set.
    #[error("{0}: both an access key id and a secret access key are needed")]
    HalfKey(&'static str),
    /// `AWS_PROFILE` names a profile no file has.
    #[error("AWS profile '{0}' not found in the shared credentials or config file")]
    NoSuchProfile(String),
}

/// Parses an AWS-style INI file into `section → key → value`. Comment lines start with `#` or
/// `;`; indented lines are sub-settings (`s3 =` blocks) and are skipped; keys are lowercased.
pub fn parse_ini(text: &str) -> HashMap<String, HashMap<String, String>> {
    let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
    let mut section: Option<String> = None;
    for raw in text.lines() {
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
            out.entry(name.clone()).or_default();
            section = Some(name);
            continue;
        }
        let (Some(sec), Some((k, v))) = (&section, line.split_once('=')) else {
            continue;
        };
        let v = v.trim();
        // An inline comment needs whitespace before it, so values may contain `#`.
        let v = v
            .find(" #")
            .or_else(|| v.find(" ;"))
            .map_or(v, |i| v[..i].trim_end());
        out.entry(sec.clone())
            .or_default()
            .insert(k.trim().to_ascii_lowercase(), v.to_owned());
    }
    out
}

fn from_section(s: &HashMap<String, String>) -> Option<Result<Credentials, ()>> {
    let id = s.get("aws_access_key_id").filter(|v| !v.is_empty());
    let secret = s.get("aws_secret_access_key").filter(|v| !v.is_empty());
    match (id, secret) {
        (Some(id), Some(secret)) => Some(Ok(Credentials {
            access_key_id: id.clone(),
            secret_access_key: secret.clone(),
            session_token: s
                .get("aws_session_token")
                .filter(|v| !v.is_empty())
                .cloned(),
        })),
        (None, None) => None,
        _ => Some(Err(())),
    }
}

/// The process environment and file system, injectable for tests.
pub trait Env {
    /// An environment variable, `None` when unset or empty.
    fn var(&self, name: &str) -> Option<String>;
    /// A file's text, `None` when unreadable.
    fn read(&self, path: &std::path::Path) -> Option<String>;
}

/// The real environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
    fn read(&self, path: &std::path::Path) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
}

fn aws_file(env: &dyn Env, var: &str, name: &str) -> Option<PathBuf> {
    env.var(var).map(PathBuf::from).or_else(|| {
        env.var("HOME")
            .map(|h| PathBuf::from(h).join(".aws").join(name))
    })
}

/// Static credentials from the environment or the profile files, or `None` when the chain
/// should go on to a role.
pub fn resolve_static(
    env: &dyn Env,
) -> Result<Option<(Credentials, CredentialSource)>, ChainError> {
    match (
        env.var("AWS_ACCESS_KEY_ID"),
        env.var("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => {
            return Ok(Some((
                Credentials {
                    access_key_id: id,
                    secret_access_key: secret,
                    session_token: env.var("AWS_SESSION_TOKEN"),
                },
                CredentialSource::Environment,
            )));
        }
        (None, None) => {}
        _ => {
            return Err(ChainError::HalfKey(
                "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY",
            ));
        }
    }
    let explicit_profile = env.var("AWS_PROFILE");
    let profile = explicit_profile
        .clone()
        .unwrap_or_else(|| "default".to_owned());
    let mut found_section = false;
    if let Some(text) =
        aws_file(env, "AWS_SHARED_CREDENTIALS_FILE", "credentials").and_then(|p| env.read(&p))
    {
        let ini = parse_ini(&text);
        if let Some(sec) = ini.get(&profile) {
            found_section = true;
            match from_section(sec) {
                Some(Ok(c)) => return Ok(Some((c, CredentialSource::CredentialsFile))),
                Some(Err(())) => return Err(ChainError::HalfKey("shared credentials file")),
                None => {}
            }
        }
    }
    if let Some(text) = aws_file(env, "AWS_CONFIG_FILE", "config").and_then(|p| env.read(&p)) {
        let ini = parse_ini(&text);
        let name = if profile == "default" {
            "default".to_owned()
        } else {
            format!("profile {profile}")
        };
        if let Some(sec) = ini.get(&name) {
            found_section = true;
            match from_section(sec) {
                Some(Ok(c)) => return Ok(Some((c, CredentialSource::ConfigFile))),
                Some(Err(())) => return Err(ChainError::HalfKey("shared config file")),
                None => {}
            }
        }
    }
    match explicit_profile {
        Some(p) if !found_section => Err(ChainError::NoSuchProfile(p)),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used)]
    use super::*;

    #[derive(Default)]
    struct FakeEnv {
        vars: HashMap<String, String>,
        files: HashMap<PathBuf, String>,
    }

    impl FakeEnv {
        fn var(mut self, k: &str, v: &str) -> Self {
            self.vars.insert(k.into(), v.into());
            self
        }
        fn file(mut self, p: &str, text: &str) -> Self {
            self.files.insert(p.into(), text.into());
            self
        }
    }

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.vars.get(name).cloned().filter(|v| !v.is_empty())
        }
        fn read(&self, path: &std::path::Path) -> Option<String> {
            self.files.get(path).cloned()
        }
    }

    const CREDS: &str = "\
# a comment
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secret/default+x ; inline comment

; another comment
[work]
AWS_ACCESS_KEY_ID=AKIDWORK
aws_secret_access_key=s#cret
aws_session_token = tok
s3 =
    max_concurrent_requests = 20
[half]
aws_access_key_id = AKIDHALF
";

    const CONFIG: &str = "\
[default]
region = eu-west-1
[profile cfgonly]
aws_access_key_id = AKIDCFG
aws_secret_access_key = cfgsecret
[profile roleonly]
role_arn = arn:aws:iam::123:role/x
";

    fn home() -> FakeEnv {
        FakeEnv::default()
            .var("HOME", "/h")
            .file("/h/.aws/credentials", CREDS)
            .file("/h/.aws/config", CONFIG)
    }

    #[test]
    fn ini_sections_comments_and_subsettings() {
        let ini = parse_ini(CREDS);
        assert_eq!(ini["default"]["aws_secret_access_key"], "secret/default+x");
        assert_eq!(ini["work"]["aws_access_key_id"], "AKIDWORK");
        assert_eq!(ini["work"]["aws_secret_access_key"], "s#cret");
        assert_eq!(ini["work"]["s3"], "");
        assert!(!ini["work"].contains_key("max_concurrent_requests"));
        assert_eq!(
            parse_ini(CONFIG)["profile cfgonly"]["aws_access_key_id"],
            "AKIDCFG"
        );
        assert!(parse_ini("key = before any section\n").is_empty());
    }

    #[test]
    fn environment_wins_over_profiles() {
        let env = home()
            .var("AWS_ACCESS_KEY_ID", "AKIDENV")
            .var("AWS_SECRET_ACCESS_KEY", "envsecret")
            .var("AWS_SESSION_TOKEN", "envtok");
        let (c, src) = resolve_static(&env).unwrap().unwrap();
        assert_eq!(src, CredentialSource::Environment);
        assert_eq!(c.access_key_id, "AKIDENV");
        assert_eq!(c.session_token.as_deref(), Some("envtok"));
        let half = home().var("AWS_ACCESS_KEY_ID", "AKIDENV");
        assert!(matches!(resolve_static(&half), Err(ChainError::HalfKey(_))));
    }

    #[test]
    fn profiles_from_both_files() {
        let (c, src) = resolve_static(&home()).unwrap().unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), src),
            ("AKIDDEFAULT", CredentialSource::CredentialsFile)
        );
        assert_eq!(c.secret_access_key, "secret/default+x");
        assert_eq!(c.session_token, None);

        let (c, _) = resolve_static(&home().var("AWS_PROFILE", "work"))
            .unwrap()
            .unwrap();
        assert_eq!(c.session_token.as_deref(), Some("tok"));

        let (c, src) = resolve_static(&home().var("AWS_PROFILE", "cfgonly"))
            .unwrap()
            .unwrap();
        assert_eq!(
            (c.access_key_id.as_str(), src),
            ("AKIDCFG", CredentialSource::ConfigFile)
        );

        // A profile with a role but no keys goes on to the role step.
        assert_eq!(
            resolve_static(&home().var("AWS_PROFILE", "roleonly")).unwrap(),
            None
        );
        assert_eq!(
            resolve_static(&home().var("AWS_PROFILE", "nope")),
            Err(ChainError::NoSuchProfile("nope".into()))
        );
        assert!(matches!(
            resolve_static(&home().var("AWS_PROFILE", "half")),
            Err(ChainError::HalfKey(_))
        ));
    }

    #[test]
    fn file_locations_can_be_overridden_and_absent_files_fall_through() {
        let env = FakeEnv::default()
            .var("HOME", "/h")
            .var("AWS_SHARED_CREDENTIALS_FILE", "/etc/creds")
            .file(
                "/etc/creds",
                "[default]\naws_access_key_id=A\naws_secret_access_key=B\n",
            );
        let (c, _) = resolve_static(&env).unwrap().unwrap();
        assert_eq!(c.access_key_id, "A");
        assert_eq!(
            resolve_static(&FakeEnv::default().var("HOME", "/none")).unwrap(),
            None
        );
        assert_eq!(resolve_static(&FakeEnv::default()).unwrap(), None);
    }
}
