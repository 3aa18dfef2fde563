//! The command line, as clap parses it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use flotilla_protocol::tokens::{Role, UnknownRole};

/// Flotilla fleet model management: sign and publish models, manage keys, trust and tokens.
///
/// Exit codes: 0 ok; 1 the server refused (4xx) or verification failed; 2 usage or
/// configuration error; 3 the server cannot be reached or failed (5xx).
#[derive(Debug, Parser)]
#[command(name = "flotilla", version, about, long_about)]
pub struct Cli {
    /// Connection settings.
    #[command(flatten)]
    pub connection: Connection,
    /// Print the server's JSON (or a JSON summary for local commands) instead of text.
    #[arg(long, global = true, help_heading = "Global options")]
    pub json: bool,
    /// No progress bars or status messages on stderr.
    #[arg(long, short, global = true, help_heading = "Global options")]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where the server is and how to authenticate. Flags win over the environment, which wins
/// over the config file.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// Server URL [default: http://127.0.0.1:8080]
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_URL",
        value_name = "URL",
        help_heading = "Global options"
    )]
    pub url: Option<String>,
    /// API token (`flt_...`).
    #[arg(
        long,
        global = true,
        env = "FLOTILLA_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        help_heading = "Global options"
    )]
    pub token: Option<String>,
    /// Config file with `url` and `token` [default: ~/.config/flotilla/cli.toml, if present]
    #[arg(
        long,
        global = true,
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate an ed25519 publisher key pair: NAME.key (private, 0600) and NAME.pub.
    Keygen(KeygenArgs),
    /// Sign a model file; writes MODEL.sig (an OpenSSF model-signing bundle).
    Sign(SignArgs),
    /// Verify a model against signature bundles and trusted public keys, offline.
    Verify(VerifyArgs),
    /// Sign (optionally), upload and publish a model version.
    Push(PushArgs),
    /// List, show and yank models and their versions.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Register, list and revoke publisher keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Set the signing threshold and export the trust root for agents.
    #[command(subcommand)]
    Trust(TrustCommand),
    /// Create, list and revoke API tokens (admin).
    #[command(subcommand)]
    Tokens(TokensCommand),
    /// Show which token the CLI presents and its role.
    Whoami,
}

/// `flotilla keygen`.
#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Path prefix of the key files: writes NAME.key and NAME.pub.
    #[arg(long, value_name = "NAME")]
    pub out: PathBuf,
    /// Replace existing key files.
    #[arg(long)]
    pub force: bool,
}

/// The facts a signature covers, besides the file's digest and size.
#[derive(Debug, Clone, Args)]
pub struct FactsArgs {
    /// Model name (1–64 of a-z 0-9 - _ ., starting with a letter or digit).
    #[arg(long, value_name = "MODEL")]
    pub name: String,
    /// Semantic version of this model version, e.g. 1.2.0.
    #[arg(long, value_name = "SEMVER")]
    pub version: String,
}

/// Options that only matter when signing.
#[derive(Debug, Clone, Args)]
pub struct SignOptions {
    /// Monotonic release counter; agents refuse to go below the installed one.
    #[arg(long, value_name = "N")]
    pub release: Option<u64>,
    /// CPU architectures the model may run on (comma-separated, e.g. x86_64,aarch64).
    #[arg(long, value_delimiter = ',', value_name = "ARCH,...")]
    pub hardware: Vec<String>,
}

/// `flotilla sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The model file.
    pub model: PathBuf,
    /// The ed25519 private key (PKCS#8 PEM, from `flotilla keygen`).
    #[arg(long, value_name = "NAME.key")]
    pub key: PathBuf,
    /// Model name and version.
    #[command(flatten)]
    pub facts: FactsArgs,
    /// Release counter and hardware.
    #[command(flatten)]
    pub options: SignOptions,
    /// Where to write the bundle [default: MODEL.sig].
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// `flotilla verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The model file.
    pub model: PathBuf,
    /// A signature bundle (repeat for several).
    #[arg(long = "sig", value_name = "FILE", required = true)]
    pub sigs: Vec<PathBuf>,
    /// A trusted public key, SPKI PEM (repeat for several).
    #[arg(long = "pub", value_name = "KEY.pub", required = true)]
    pub public_keys: Vec<PathBuf>,
    /// How many distinct trusted keys must have signed.
    #[arg(long, default_value_t = 1, value_name = "K")]
    pub threshold: usize,
}

/// `flotilla push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// The model file.
    pub model: PathBuf,
    /// Model name and version.
    #[command(flatten)]
    pub facts: FactsArgs,
    /// Sign with this private key before pushing.
    #[arg(
        long,
        value_name = "NAME.key",
        conflicts_with = "sigs",
        required_unless_present = "sigs"
    )]
    pub key: Option<PathBuf>,
    /// Push these existing signature bundles instead of signing (repeat for several).
    #[arg(long = "sig", value_name = "FILE")]
    pub sigs: Vec<PathBuf>,
    /// Release counter and hardware (with --key).
    #[command(flatten)]
    pub options: SignOptions,
    /// With --key: do not keep the signature as MODEL.sig.
    // `requires = "key"` would not catch `--sig`: a missing argument that conflicts with a
    // present one counts as satisfied.
    #[arg(long, conflicts_with = "sigs")]
    pub no_save_sig: bool,
}

/// `flotilla models ...`.
#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List models.
    #[command(alias = "list")]
    Ls,
    /// Show a model, its versions and their tensors.
    Show {
        /// Model name.
        name: String,
    },
    /// Yank a version: devices running it keep it, but it cannot be deployed anew.
    Yank {
        /// Model name.
        name: String,
        /// Version.
        version: String,
        /// Why (shown to operators).
        #[arg(long, default_value = "")]
        reason: String,
    },
}

/// `flotilla keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Register a publisher public key (admin).
    Add {
        /// The public key, SPKI PEM (NAME.pub).
        public_key: PathBuf,
        /// Who holds the key, e.g. ml-team-ci.
        #[arg(long)]
        name: String,
    },
    /// List publisher keys, revoked ones included.
    #[command(alias = "list")]
    Ls,
    /// Revoke a publisher key (admin): it stops counting toward any threshold.
    Revoke {
        /// The key id (hex sha256 of the SPKI DER; see `flotilla keys ls`).
        key_id: String,
    },
}

/// `flotilla trust ...`.
#[derive(Debug, Subcommand)]
pub enum TrustCommand {
    /// Set how many distinct publisher keys must sign each version (admin).
    Threshold {
        /// At least 1.
        #[arg(value_parser = clap::value_parser!(u32).range(1..))]
        threshold: u32,
    },
    /// Export the trust root (active keys + thresholds) as JSON, to provision agents.
    Export {
        /// Write it to FILE instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace FILE if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
}

/// `flotilla tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is shown this once.
    Create {
        /// Who or what uses it.
        #[arg(long)]
        name: String,
        /// admin, publisher, operator or viewer.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// Lifetime, e.g. 30d, 12h, 90min [default: never expires].
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        expires_in: Option<Duration>,
    },
    /// List tokens (never their secrets).
    #[command(alias = "list")]
    Ls,
    /// Revoke a token: it stops working at once.
    Revoke {
        /// Token id (see `flotilla tokens ls`).
        id: String,
    },
}

fn parse_role(s: &str) -> Result<Role, UnknownRole> {
    s.parse()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn push_needs_exactly_one_of_key_and_sig() {
        let base = [
            "flotilla",
            "push",
            "m.onnx",
            "--name",
            "fraud",
            "--version",
            "1.0.0",
        ];
        let err = Cli::try_parse_from(base).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let both = [&base[..], &["--key", "k.key", "--sig", "m.sig"]].concat();
        assert_eq!(Cli::try_parse_from(both).unwrap_err().exit_code(), 2);
        let sigs = [&base[..], &["--sig", "a.sig", "--sig", "b.sig"]].concat();
        let Command::Push(push) = Cli::try_parse_from(sigs).unwrap().command else {
            unreachable!()
        };
        assert_eq!(push.sigs.len(), 2);
        // Release and hardware only mean something when signing.
        let key = [
            &base[..],
            &["--key", "k.key", "--hardware", "x86_64,aarch64"],
        ]
        .concat();
        let Command::Push(push) = Cli::try_parse_from(key).unwrap().command else {
            unreachable!()
        };
        assert_eq!(push.options.hardware, ["x86_64", "aarch64"]);
        let no_save = [&base[..], &["--sig", "a.sig", "--no-save-sig"]].concat();
        assert!(Cli::try_parse_from(no_save).is_err());
    }

    #[test]
    fn global_flags_go_anywhere_and_durations_and_roles_parse() {
        let cli = Cli::try_parse_from([
            "flotilla",
            "tokens",
            "create",
            "--name",
            "ci",
            "--role",
            "publisher",
            "--expires-in",
            "30d",
            "--json",
            "--url",
            "http://x:1",
        ])
        .unwrap();
        assert!(cli.json);
        assert_eq!(cli.connection.url.as_deref(), Some("http://x:1"));
        let Command::Tokens(TokensCommand::Create {
            role, expires_in, ..
        }) = cli.command
        else {
            unreachable!()
        };
        assert_eq!(role, Role::Publisher);
        assert_eq!(expires_in, Some(Duration::from_secs(30 * 86_400)));
        assert!(Cli::try_parse_from([
            "flotilla", "tokens", "create", "--name", "x", "--role", "root"
        ])
        .is_err());
        assert!(Cli::try_parse_from(["flotilla", "trust", "threshold", "0"]).is_err());
    }
}
