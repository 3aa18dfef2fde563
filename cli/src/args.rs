//! The command line, as clap parses it.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use flotilla_protocol::tokens::{Role, UnknownRole};

use crate::labels::{Label, LabelChange, Selector};
use crate::signing;

/// Flotilla fleet model management: sign and publish models, manage keys, trust and tokens,
/// enroll devices and deploy models to them.
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
    /// Create, list and revoke enrollment tokens for devices (operator).
    #[command(subcommand)]
    EnrollTokens(EnrollTokensCommand),
    /// List, show, label, approve, revoke and delete devices.
    #[command(subcommand)]
    Devices(DevicesCommand),
    /// Set which version of a model the devices matching a selector run (operator).
    Deploy(DeployArgs),
    /// List and remove deployments.
    #[command(subcommand)]
    Deployments(DeploymentsCommand),
    /// Compare a model's versions per device class on the edge, and on the server.
    Placement(PlacementArgs),
    /// Staged, health-gated rollouts: create, watch, pause, resume, approve, abort, promote.
    #[command(subcommand, alias = "rollouts")]
    Rollout(RolloutCommand),
    /// Webhooks that receive every rollout transition, signed with HMAC-SHA256 (admin).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
}

/// `flotilla rollout ...`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Start a rollout: MODEL@VERSION to the devices of a selector, in stages.
    Create(Box<RolloutCreateArgs>),
    /// List rollouts, newest first.
    #[command(alias = "list")]
    Ls {
        /// Only this model's.
        #[arg(long)]
        model: Option<String>,
        /// Only this state (running, waiting_approval, paused, completed, rolled_back,
        /// aborted) or `open` (running, waiting or paused).
        #[arg(long)]
        state: Option<String>,
    },
    /// A rollout at a glance: stage, devices per state, gates against thresholds, history.
    Show {
        /// Rollout id.
        id: String,
        /// Redraw every 2 seconds until the rollout completes, rolls back or is aborted.
        #[arg(long)]
        watch: bool,
    },
    /// Stop the rollout where it is (devices stay on what they run).
    Pause(RolloutActionArgs),
    /// Continue a paused rollout.
    Resume(RolloutActionArgs),
    /// Let a stage that waits for approval advance.
    Approve(RolloutActionArgs),
    /// Stop the rollout and send every device back to its previous version.
    Abort(RolloutActionArgs),
    /// Skip the remaining stages: the version becomes the selector's deployment now.
    Promote(RolloutActionArgs),
    /// Saved rollout policies, reusable by name.
    #[command(subcommand)]
    Policies(PoliciesCommand),
}

/// The rollout id and an optional reason, for the history.
#[derive(Debug, Args)]
pub struct RolloutActionArgs {
    /// Rollout id.
    pub id: String,
    /// Why, recorded in the rollout's history.
    #[arg(long)]
    pub reason: Option<String>,
}

/// `flotilla rollout create`.
#[derive(Debug, Args)]
pub struct RolloutCreateArgs {
    /// What to roll out, e.g. fraud@1.2.0.
    #[arg(value_parser = ModelVersion::parse, value_name = "MODEL@VERSION")]
    pub target: ModelVersion,
    /// Which devices: labels they must all match [default: every device].
    #[arg(long, value_parser = Selector::parse, value_name = "KEY=VALUE,...")]
    pub selector: Option<Selector>,
    /// A saved policy to follow (see `flotilla rollout policies`).
    #[arg(long, value_name = "NAME", conflicts_with_all = ["policy_file", "stages"])]
    pub policy: Option<String>,
    /// A policy file (the API's JSON `RolloutPolicy`, or the same in TOML).
    #[arg(long, value_name = "FILE", conflicts_with = "stages")]
    pub policy_file: Option<PathBuf>,
    /// Stages as cumulative shares: `10%,50%,100%`, or device counts `5,50,500`.
    #[arg(long, value_name = "SHARES", default_value = "10%,50%,100%")]
    pub stages: String,
    /// Minimum time each stage runs before it may advance.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_secs)]
    pub bake: u64,
    /// Gate: at most this share of the candidate's inferences may fail (0–1).
    #[arg(long, value_name = "X")]
    pub max_error_rate: Option<f64>,
    /// Gate: at most this share of a stage's devices may fail to activate it (0–1).
    #[arg(long, value_name = "X", default_value = "0")]
    pub max_failed_ratio: f64,
    /// Gate: the candidate's p95 latency at most this multiple of the old version's.
    #[arg(long, value_name = "X")]
    pub max_p95_ratio: Option<f64>,
    /// Gate: at least this many devices of each stage report the candidate running.
    #[arg(long, value_name = "N")]
    pub min_devices: Option<u64>,
    /// Start with a shadow stage: the first stage's devices run the candidate beside their
    /// version, which keeps answering, and it goes live only if it agrees enough.
    #[arg(long)]
    pub shadow: bool,
    /// With --shadow: the agreement the shadow stage needs (0–1).
    #[arg(long, value_name = "X", default_value = "0.95", requires = "shadow")]
    pub min_agreement: f64,
    /// With --shadow: the share of requests also run on the candidate (0–1].
    #[arg(long, value_name = "X", default_value = "1", requires = "shadow")]
    pub sample_rate: f64,
    /// Each stage waits for `flotilla rollout approve` once its gates hold.
    #[arg(long)]
    pub approve_each: bool,
    /// On a breached gate: roll back (default) or pause.
    #[arg(long, value_enum, default_value = "rollback")]
    pub on_failure: OnFailureArg,
    /// How long a device of an opened stage has to report the candidate active before it
    /// counts as failed.
    #[arg(long, value_name = "DURATION", default_value = "10m", value_parser = parse_secs)]
    pub deadline: u64,
    /// Also save the policy under this name for reuse.
    #[arg(long, value_name = "NAME")]
    pub save_as: Option<String>,
}

/// What a breached gate does.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnFailureArg {
    /// Send every device back to its previous version.
    Rollback,
    /// Stop and wait for an operator.
    Pause,
}

/// `flotilla rollout policies ...`.
#[derive(Debug, Subcommand)]
pub enum PoliciesCommand {
    /// List saved policies.
    #[command(alias = "list")]
    Ls,
    /// Show one as JSON.
    Show {
        /// Policy name.
        name: String,
    },
    /// Save (or replace) a policy from a file (JSON or TOML `RolloutPolicy`).
    Save {
        /// Policy name.
        name: String,
        /// The policy file.
        file: PathBuf,
    },
    /// Delete a saved policy (rollouts made from it keep their copy).
    #[command(alias = "delete")]
    Rm {
        /// Policy name.
        name: String,
    },
}

/// `flotilla webhooks ...`.
#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register a URL; prints the HMAC secret once.
    Add {
        /// http:// or https:// URL receiving JSON POSTs.
        url: String,
        /// The shared secret (at least 16 characters) [default: generated].
        #[arg(long)]
        secret: Option<String>,
    },
    /// List webhooks.
    #[command(alias = "list")]
    Ls,
    /// Delete a webhook.
    #[command(alias = "delete")]
    Rm {
        /// Webhook id.
        id: String,
    },
}

/// `flotilla placement MODEL [--group-by KEY]`.
#[derive(Debug, Args)]
pub struct PlacementArgs {
    /// Model name.
    pub model: String,
    /// Group devices by `hardware` (architecture, cores, memory) or by a label key.
    #[arg(long, default_value = "hardware", value_name = "hardware|LABEL")]
    pub group_by: String,
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
        /// Accept MODEL's versions signed with digest-only bundles (the upstream
        /// `model_signing` tool's, no Flotilla facts): the server then names their model and
        /// version. Repeat for more models. Without it agents refuse such bundles.
        #[arg(long = "digest-only", value_name = "MODEL")]
        digest_only: Vec<String>,
    },
    /// Rotate the trust root: sign the next root (the server's active keys and thresholds now,
    /// and its desired-state key) with publisher keys and publish it (admin). Agents accept it
    /// only when a threshold of their current root's keys and of the new root's keys signed.
    Rotate {
        /// A publisher private key to sign with (repeat: old and new keys as the threshold asks).
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
        /// Name a new server desired-state key (SPKI PEM) instead of the server's current one;
        /// restart the server with it after publishing.
        #[arg(long, value_name = "FILE")]
        server_key: Option<PathBuf>,
        /// Also accept MODEL's digest-only bundles under the new root (repeatable).
        #[arg(long = "digest-only", value_name = "MODEL")]
        digest_only: Vec<String>,
        /// The trust root the agents have now (a `trust export` file): check the rotation as
        /// they will before publishing it. The server cannot for the first rotation, having
        /// never seen that root signed.
        #[arg(long, value_name = "FILE")]
        current: Option<PathBuf>,
        /// Write the signed root to FILE (for more signatures: `flotilla trust sign-root`)
        /// instead of publishing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Replace FILE if it exists.
        #[arg(long, requires = "out")]
        force: bool,
    },
    /// Add signatures to a signed trust root file (`trust rotate --out`), in place.
    SignRoot {
        /// The signed root.
        file: PathBuf,
        /// A publisher private key to sign with (repeatable).
        #[arg(long = "key", value_name = "FILE", required = true)]
        keys: Vec<PathBuf>,
    },
    /// Publish a signed trust root file for agents to fetch (admin).
    PublishRoot {
        /// The signed root.
        file: PathBuf,
        /// The trust root the agents have now: check the rotation as they will first.
        #[arg(long, value_name = "FILE")]
        current: Option<PathBuf>,
    },
    /// List the rotated trust roots.
    Roots,
}

/// `flotilla tokens ...`.
#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// Create a token; its secret is shown this once.
    Create {
        /// Who or what uses it.
        #[arg(long)]
        name: String,
        /// admin, publisher, operator, viewer or inference.
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

/// `flotilla enroll-tokens ...`.
#[derive(Debug, Subcommand)]
pub enum EnrollTokensCommand {
    /// Create an enrollment token; its secret (`fle_...`) is shown this once.
    Create {
        /// What it is for, e.g. "plant-7 gateways".
        #[arg(long, default_value = "enrollment")]
        name: String,
        /// A label every device enrolling with it gets, winning over the device's own
        /// (repeat for several).
        #[arg(long = "label", value_parser = Label::parse, value_name = "KEY=VALUE")]
        labels: Vec<Label>,
        /// A label key devices enrolling with it may set themselves (`flotilla-agent --label
        /// KEY=...`); repeat for several. A device asking for any other key is refused.
        #[arg(long = "allow-label", value_name = "KEY")]
        allow_labels: Vec<String>,
        /// How long it can be used, e.g. 1d, 12h, 3600s (at most a year).
        #[arg(long, value_parser = parse_lifetime, default_value = "1d", value_name = "DURATION")]
        expires_in: Duration,
        /// How many devices may enroll with it.
        #[arg(
            long,
            default_value_t = 1,
            value_parser = clap::value_parser!(u32).range(1..),
            value_name = "N"
        )]
        max_uses: u32,
        /// Devices enrolled with it wait as `pending` until an operator approves them.
        #[arg(long)]
        require_approval: bool,
    },
    /// List enrollment tokens (never their secrets).
    #[command(alias = "list")]
    Ls,
    /// Revoke an enrollment token: no device can enroll with it any more. Devices already
    /// enrolled with it are not affected.
    Revoke {
        /// Enrollment token id (see `flotilla enroll-tokens ls`).
        id: String,
    },
}

/// A device status, for filtering.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeviceStatus {
    /// Enrolled and receiving its desired state.
    Active,
    /// Enrolled, waiting for an operator's approval.
    Pending,
    /// Its credential no longer works.
    Revoked,
}

impl DeviceStatus {
    /// As the API names it.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Pending => "pending",
            DeviceStatus::Revoked => "revoked",
        }
    }
}

/// `flotilla devices ...`.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List devices: status, labels, last contact and the versions they run.
    #[command(alias = "list")]
    Ls {
        /// Only devices whose labels match all of these terms.
        #[arg(long, value_parser = Selector::parse, value_name = "KEY=VALUE,...")]
        selector: Option<Selector>,
        /// Only devices with this status.
        #[arg(long, value_enum)]
        status: Option<DeviceStatus>,
    },
    /// Show a device: labels, hardware, what it should run and how its slots are doing.
    Show {
        /// Device id (see `flotilla devices ls`).
        id: String,
    },
    /// Set (KEY=VALUE) or remove (KEY-) labels of a device; its desired state follows at once.
    ///
    /// Without --replace the other labels are kept: the CLI reads the device's labels, applies
    /// the changes and writes the result back (the API replaces all labels at once).
    Label {
        /// Device id.
        id: String,
        /// Changes: KEY=VALUE sets a label, KEY- removes one.
        #[arg(
            value_parser = LabelChange::parse,
            value_name = "KEY=VALUE|KEY-",
            required_unless_present = "replace"
        )]
        changes: Vec<LabelChange>,
        /// Make the given labels the device's only labels (none given: remove all).
        #[arg(long)]
        replace: bool,
    },
    /// Approve a pending device.
    Approve {
        /// Device id.
        id: String,
    },
    /// Revoke a device: its credential stops working on its next request.
    Revoke {
        /// Device id.
        id: String,
    },
    /// Ask a device to rotate its credential: it takes a new one on its next poll, and the
    /// old one stops working once the new one is used.
    RotateCredential {
        /// Device id.
        id: String,
    },
    /// Delete a device and its report history. To re-admit it, it must enroll again.
    #[command(alias = "delete")]
    Rm {
        /// Device id.
        id: String,
    },
}

/// `flotilla deploy`.
#[derive(Debug, Args)]
pub struct DeployArgs {
    /// What to run, e.g. fraud@1.2.0.
    #[arg(value_parser = ModelVersion::parse, value_name = "MODEL@VERSION")]
    pub target: ModelVersion,
    /// Which devices: labels they must all match, e.g. site=plant-7,class=edge
    /// [default: every device].
    #[arg(long, value_parser = Selector::parse, value_name = "KEY=VALUE,...")]
    pub selector: Option<Selector>,
    /// Hybrid inference: send requests the device is unsure about to this server model
    /// (MODEL, or MODEL@VERSION; without a version, the server's baseline of that model).
    #[arg(long, value_name = "MODEL[@VERSION]", requires_all = ["confidence_output", "threshold"])]
    pub escalate_to: Option<String>,
    /// With --escalate-to: the output tensor whose largest value (per row) is the confidence.
    #[arg(long, value_name = "OUTPUT", requires = "escalate_to")]
    pub confidence_output: Option<String>,
    /// With --escalate-to: escalate when the confidence is below this.
    #[arg(long, value_name = "X", requires = "escalate_to")]
    pub threshold: Option<f64>,
    /// With --escalate-to: how long the device waits for the server before answering itself.
    #[arg(long, value_name = "DURATION", default_value = "500ms", value_parser = parse_timeout)]
    pub escalation_timeout: Duration,
}

/// `flotilla deployments ...`.
#[derive(Debug, Subcommand)]
pub enum DeploymentsCommand {
    /// List deployments and how many devices each selects.
    #[command(alias = "list")]
    Ls,
    /// Remove a deployment: its devices stop being told to run that model (unless another
    /// deployment of the model selects them).
    #[command(alias = "delete")]
    Rm {
        /// Deployment id (see `flotilla deployments ls`).
        id: String,
    },
}

/// `MODEL@VERSION`, each part checked as `push` checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelVersion {
    /// Model name.
    pub model: String,
    /// Semantic version.
    pub version: String,
}

impl ModelVersion {
    /// Parses `fraud@1.2.0`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (model, version) = text
            .split_once('@')
            .ok_or_else(|| format!("`{text}` is not MODEL@VERSION (like fraud@1.2.0)"))?;
        signing::check_model_name(model).map_err(|e| e.to_string())?;
        signing::check_version(version).map_err(|e| e.to_string())?;
        Ok(ModelVersion {
            model: model.to_owned(),
            version: version.to_owned(),
        })
    }
}

/// An escalation timeout such as `500ms` or `2s`: at least a millisecond, at most a minute.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration < Duration::from_millis(1) || duration > Duration::from_secs(60) {
        return Err("give a timeout between 1ms and 60s (like 500ms)".to_owned());
    }
    Ok(duration)
}

/// A duration such as `90s`, `10m` or `0s`, in whole seconds.
fn parse_secs(text: &str) -> Result<u64, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.subsec_nanos() != 0 {
        return Err("give a whole number of seconds (like 90s, 10m, 1h)".to_owned());
    }
    Ok(duration.as_secs())
}

/// A lifetime such as `1d`, `12h` or `3600s`: whole seconds, at least one, since the API
/// counts seconds (`500ms` would silently become 0).
fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let duration = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if duration.as_secs() == 0 || duration.subsec_nanos() != 0 {
        return Err(
            "give a whole number of seconds, at least one (like 3600s, 12h, 1d)".to_owned(),
        );
    }
    Ok(duration)
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

    #[test]
    fn model_at_version_is_checked_before_sending() {
        let mv = ModelVersion::parse("fraud@1.2.0-rc.1").unwrap();
        assert_eq!(
            (mv.model.as_str(), mv.version.as_str()),
            ("fraud", "1.2.0-rc.1")
        );
        for bad in [
            "fraud",
            "fraud@",
            "@1.0.0",
            "Fraud@1.0.0",
            "fraud@1.0",
            "fraud@latest",
        ] {
            assert!(ModelVersion::parse(bad).is_err(), "{bad}");
        }
        assert!(ModelVersion::parse("fraud")
            .unwrap_err()
            .contains("MODEL@VERSION"));
        // clap refuses it with its usage error, exit 2.
        let err = Cli::try_parse_from(["flotilla", "deploy", "fraud"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        let Command::Deploy(deploy) =
            Cli::try_parse_from(["flotilla", "deploy", "fraud@1.0.0", "--selector", "site=a"])
                .unwrap()
                .command
        else {
            unreachable!()
        };
        assert_eq!(deploy.target.model, "fraud");
        assert_eq!(deploy.selector.unwrap().to_string(), "site=a");
    }

    #[test]
    fn lifetimes_are_whole_seconds() {
        assert_eq!(parse_lifetime("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse_lifetime("3600s"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_lifetime("90min"), Ok(Duration::from_secs(5400)));
        for bad in ["0s", "500ms", "1500ms", "3600", "soon", ""] {
            assert!(parse_lifetime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn enrollment_tokens_default_to_one_use_for_a_day() {
        let cli = Cli::try_parse_from([
            "flotilla",
            "enroll-tokens",
            "create",
            "--label",
            "site=plant-7",
            "--label",
            "class=edge",
            "--allow-label",
            "rack",
            "--allow-label",
            "row",
        ])
        .unwrap();
        let Command::EnrollTokens(EnrollTokensCommand::Create {
            name,
            labels,
            allow_labels,
            expires_in,
            max_uses,
            require_approval,
        }) = cli.command
        else {
            unreachable!()
        };
        assert_eq!(name, "enrollment");
        assert_eq!(labels.len(), 2);
        assert_eq!(allow_labels, ["rack", "row"]);
        assert_eq!(expires_in, Duration::from_secs(86_400));
        assert_eq!(max_uses, 1);
        assert!(!require_approval);
        for bad in [
            &["--label", "site"][..],
            &["--max-uses", "0"],
            &["--expires-in", "0s"],
        ] {
            let args = [&["flotilla", "enroll-tokens", "create"][..], bad].concat();
            assert_eq!(Cli::try_parse_from(args).unwrap_err().exit_code(), 2);
        }
    }

    #[test]
    fn device_commands_parse_labels_selectors_and_statuses() {
        let cli = Cli::try_parse_from([
            "flotilla",
            "devices",
            "ls",
            "--selector",
            "site=plant-7,class=edge",
            "--status",
            "pending",
        ])
        .unwrap();
        let Command::Devices(DevicesCommand::Ls { selector, status }) = cli.command else {
            unreachable!()
        };
        assert_eq!(selector.unwrap().to_string(), "class=edge,site=plant-7");
        assert_eq!(status, Some(DeviceStatus::Pending));
        assert!(Cli::try_parse_from(["flotilla", "devices", "ls", "--status", "gone"]).is_err());
        assert!(Cli::try_parse_from(["flotilla", "devices", "ls", "--selector", "site"]).is_err());

        let cli =
            Cli::try_parse_from(["flotilla", "devices", "label", "d1", "tier=canary", "site-"])
                .unwrap();
        let Command::Devices(DevicesCommand::Label {
            changes, replace, ..
        }) = cli.command
        else {
            unreachable!()
        };
        assert_eq!(changes[1], LabelChange::Remove("site".into()));
        assert!(!replace);
        // Changes are required, unless all labels are being replaced (by none).
        assert!(Cli::try_parse_from(["flotilla", "devices", "label", "d1"]).is_err());
        assert!(Cli::try_parse_from(["flotilla", "devices", "label", "d1", "--replace"]).is_ok());
        assert!(Cli::try_parse_from(["flotilla", "devices", "label", "d1", "tier"]).is_err());
    }
}
