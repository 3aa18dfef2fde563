//! Where the server is and which token to present.
//!
//! Precedence, highest first: `--url`/`--token` flags, `FLOTILLA_URL`/`FLOTILLA_TOKEN` (clap
//! merges those two layers), the config file, the default URL. The config file is `--config
//! FILE`, or else `$XDG_CONFIG_HOME/flotilla/cli.toml` (`~/.config/flotilla/cli.toml`) when it
//! exists; it is read only by commands that talk to the server.

use std::fmt;
use std::path::{Path, PathBuf};

use reqwest::Url;
use serde::Deserialize;

use crate::error::CliError;

/// The server URL when nothing else says otherwise.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// An API token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// A token from its secret; `None` for an empty string.
    pub fn new(secret: String) -> Option<Self> {
        let secret = secret.trim().to_owned();
        (!secret.is_empty()).then_some(Token(secret))
    }

    /// The secret, to put in the `Authorization` header.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// The config file: `url` and `token`, nothing else.
#[derive(Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Server URL.
    pub url: Option<String>,
    /// API token.
    pub token: Option<String>,
}

impl fmt::Debug for FileConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileConfig")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Resolved connection settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Base URL of the server.
    pub url: Url,
    /// Token, if one was configured anywhere.
    pub token: Option<Token>,
}

/// `$XDG_CONFIG_HOME/flotilla/cli.toml`, or `~/.config/flotilla/cli.toml`.
pub fn default_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| dirs::home_dir().map(|home| home.join(".config")))?;
    Some(base.join("flotilla").join("cli.toml"))
}

/// Reads the config file: `explicit` must exist; the default path is optional.
pub fn load_file(explicit: Option<&Path>) -> Result<FileConfig, CliError> {
    let path = match explicit {
        Some(path) => path.to_owned(),
        None => match default_path() {
            Some(path) if path.exists() => path,
            _ => return Ok(FileConfig::default()),
        },
    };
    let text = std::fs::read_to_string(&path).map_err(|e| {
        CliError::config(format!("cannot read config file {}: {e}", path.display()))
    })?;
    parse_file(&text).map_err(|e| CliError::config(format!("{}: {e}", path.display())))
}

/// Parses config file text; the error is one line: `line 2: unknown field ...`.
pub fn parse_file(text: &str) -> Result<FileConfig, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let message = e.message().trim();
        match e.span() {
            Some(span) => {
                let line = text.get(..span.start).unwrap_or("").matches('\n').count() + 1;
                format!("line {line}: {message}")
            }
            None => message.to_owned(),
        }
    })
}

/// Applies the precedence: `flag_*` (flag or environment, as clap resolved them) over `file`
/// over the default URL.
pub fn resolve(
    flag_url: Option<String>,
    flag_token: Option<String>,
    file: FileConfig,
) -> Result<Settings, CliError> {
    let raw_url = flag_url
        .filter(|u| !u.trim().is_empty())
        .or(file.url)
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let url = parse_url(&raw_url)?;
    let token = flag_token
        .and_then(Token::new)
        .or_else(|| file.token.and_then(Token::new));
    Ok(Settings { url, token })
}

fn parse_url(raw: &str) -> Result<Url, CliError> {
    let url = Url::parse(raw.trim())
        .map_err(|e| CliError::config(format!("invalid server URL `{raw}`: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(CliError::config(format!(
            "invalid server URL `{raw}`: expected http(s)://host[:port]"
        )));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(CliError::config(format!(
            "invalid server URL `{raw}`: no query or fragment allowed"
        )));
    }
    Ok(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(url: Option<&str>, token: Option<&str>) -> FileConfig {
        FileConfig {
            url: url.map(str::to_owned),
            token: token.map(str::to_owned),
        }
    }

    #[test]
    fn flags_or_env_win_over_the_file_which_wins_over_the_default() {
        let s = resolve(None, None, FileConfig::default()).unwrap();
        assert_eq!(s.url.as_str(), "http://127.0.0.1:8080/");
        assert_eq!(s.token, None);

        let s = resolve(
            None,
            None,
            file(Some("https://f.example"), Some("flt_file")),
        )
        .unwrap();
        assert_eq!(s.url.as_str(), "https://f.example/");
        assert_eq!(s.token.unwrap().secret(), "flt_file");

        let s = resolve(
            Some("http://flag.example:9".into()),
            Some("flt_flag".into()),
            file(Some("https://f.example"), Some("flt_file")),
        )
        .unwrap();
        assert_eq!(s.url.as_str(), "http://flag.example:9/");
        assert_eq!(s.token.unwrap().secret(), "flt_flag");

        // Each key is resolved on its own.
        let s = resolve(
            None,
            Some("flt_flag".into()),
            file(Some("https://f.example"), Some("flt_file")),
        )
        .unwrap();
        assert_eq!(s.url.as_str(), "https://f.example/");
        assert_eq!(s.token.unwrap().secret(), "flt_flag");
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = resolve(
            Some(" ".into()),
            Some(String::new()),
            file(Some("https://f.example"), Some("flt_file")),
        )
        .unwrap();
        assert_eq!(s.url.as_str(), "https://f.example/");
        assert_eq!(s.token.unwrap().secret(), "flt_file");
        let s = resolve(None, None, file(None, Some(""))).unwrap();
        assert_eq!(s.token, None);
    }

    #[test]
    fn bad_urls_are_config_errors() {
        for bad in [
            "localhost:8080",
            "ftp://x",
            "http://",
            "http://x/?a=1",
            "::",
        ] {
            let err = resolve(Some(bad.into()), None, FileConfig::default()).unwrap_err();
            assert_eq!(err.code(), "config", "{bad}");
            assert_eq!(err.exit_code(), 2);
        }
    }

    #[test]
    fn the_file_accepts_url_and_token_only() {
        let parsed = parse_file("url = \"http://x:1\"\ntoken = \"flt_t\"\n").unwrap();
        assert_eq!(parsed, file(Some("http://x:1"), Some("flt_t")));
        assert_eq!(parse_file("").unwrap(), FileConfig::default());
        let err = parse_file("url = \"http://x\"\ntokn = \"flt_t\"\n").unwrap_err();
        assert!(err.starts_with("line 2: unknown field `tokn`"), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }

    #[test]
    fn an_explicit_config_file_must_exist_and_parse() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.toml");
        let err = load_file(Some(&missing)).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), ("config", 2));

        let bad = dir.path().join("bad.toml");
        std::fs::write(&bad, "colour = 1\n").unwrap();
        let err = load_file(Some(&bad)).unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");

        let good = dir.path().join("good.toml");
        std::fs::write(&good, "url = \"http://x:1\"\n").unwrap();
        assert_eq!(
            load_file(Some(&good)).unwrap(),
            file(Some("http://x:1"), None)
        );
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let f = file(Some("http://x"), Some("flt_secret"));
        assert!(!format!("{f:?}").contains("flt_secret"));
        let s = resolve(None, Some("flt_secret".into()), FileConfig::default()).unwrap();
        assert!(!format!("{s:?}").contains("flt_secret"));
    }
}
