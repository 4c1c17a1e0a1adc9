//! The command-line surface (clap derive). Subcommands live in `commands/`, one module each.

use clap::{Args, Parser, Subcommand};

use crate::device::DeviceSpec;

#[derive(Debug, Parser)]
#[command(
    name = "pretext",
    version,
    about = "Self-supervised pretext tasks against unsupervised baselines, when labels are scarce",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the compiled-in backends and the devices this machine offers; with --device, check
    /// that the device runs a kernel.
    Devices(DeviceArgs),
    /// Inspect data sets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Unsupervised baselines: PCA, K-means and Gaussian mixtures on pixels or table columns.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Pretrain an encoder on a pretext task; checkpoints every epoch, resumable, and exports
    /// the encoder (encoder.safetensors + encoder.json) into the run directory.
    Pretrain(PretrainArgs),
    /// The comparison study: pretrain, then evaluate every representation (pixels, PCA, a
    /// random encoder, each pretext task's encoder) by linear probe, kNN probe and K-means
    /// clustering with 1, 10, 100 and all labels per class; writes a report.
    Compare(CompareArgs),
    /// Write a pretrained encoder's embeddings of a split as NumPy arrays (`--out`, and the labels
    /// beside it as `<stem>-labels.npy`).
    Embed(EmbedArgs),
    /// One cell of the study: evaluate a pretrained encoder by one protocol at one label budget,
    /// over several seeds (results cached in the run directory's probes-<settings>.jsonl).
    Probe(ProbeArgs),
    /// Host this machine's device for remote training (`--device remote:ws://HOST:PORT` or
    /// `remote:iroh://ID@HOST:PORT` elsewhere) until Ctrl+C; every client must present the
    /// token. Feature `remote`.
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The device to host, and the token clients must present (`--token-file`, or
    /// `PRETEXT_REMOTE_TOKEN`).
    #[command(flatten)]
    pub device: DeviceArgs,
    /// How clients reach the server: `websocket` (`remote:ws://HOST:PORT`; unencrypted, for
    /// trusted networks) or `iroh` (`remote:iroh://ID@HOST:PORT`; the server is authenticated
    /// by its id and the traffic encrypted, for any network).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: ServeTransport,
    /// WebSocket only: the address to listen on (default 127.0.0.1, this machine only; 0.0.0.0
    /// every interface of a trusted network). Iroh listens on every interface.
    #[arg(long)]
    pub host: Option<std::net::IpAddr>,
    /// The TCP port (WebSocket) or UDP port (Iroh); 0 picks a free one (printed when serving
    /// starts).
    #[arg(long, default_value_t = 3000)]
    pub port: u16,
    /// Iroh only: the file holding the server's secret key, created on first use (readable by
    /// its owner only), so the id clients dial stays the same across restarts. Without it the
    /// server takes a new id each start.
    #[arg(long)]
    pub identity_file: Option<std::path::PathBuf>,
    /// Iroh only: `disabled` (clients dial HOST:PORT directly; nothing goes through a third
    /// party) or `public` (n0's public relays too, so clients behind NAT find the server by its
    /// id alone: `remote:iroh://ID`).
    #[arg(long, value_enum, default_value = "disabled")]
    pub relays: IrohRelaysArg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IrohRelaysArg {
    Disabled,
    Public,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServeTransport {
    Websocket,
    Iroh,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Principal component analysis: explained variance, projected features.
    Pca(PcaArgs),
    /// K-means clustering: inertia and, with labels, ACC/NMI/ARI against them.
    Kmeans(KMeansArgs),
    /// A Gaussian mixture fitted by EM (scikit-learn's GaussianMixture): log-likelihood and,
    /// with labels, ACC/NMI/ARI of the most probable components against them.
    Gmm(GmmArgs),
}

/// Data for the baselines: image data sets (training split, flattened) or CSV tables.
#[derive(Debug, Clone, Args)]
pub struct FeatureArgs {
    /// An embedded data set, a directory of IDX files, CIFAR batches or class folders of images
    /// (32x32), or a CSV table (`*.csv`).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// For CSV tables: the column holding class labels (a header name, or a 1-based number).
    #[arg(long)]
    pub label_column: Option<String>,
    /// Scale each column first, fitted on these rows and saved with the model: `standard`
    /// (mean 0, standard deviation 1, scikit-learn's StandardScaler) for tables whose columns
    /// have different units or ranges, `minmax` (to [0, 1], MinMaxScaler), or `none` (pixels
    /// share one scale already).
    #[arg(long, value_enum, default_value = "none")]
    pub scale: ScaleArg,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Write the fitted model, features and a JSON summary to this directory.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScaleArg {
    None,
    Standard,
    Minmax,
}

#[derive(Debug, Args)]
pub struct PcaArgs {
    #[command(flatten)]
    pub input: FeatureArgs,
    /// Components to keep: a count (50), or a fraction of variance to keep (0.95).
    #[arg(long, default_value = "50")]
    pub components: String,
    /// Scale the projected features to unit variance.
    #[arg(long)]
    pub whiten: bool,
    #[arg(long, value_enum, default_value = "auto")]
    pub solver: PcaSolverArg,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PcaSolverArg {
    Auto,
    Exact,
    Randomized,
}

#[derive(Debug, Args)]
pub struct KMeansArgs {
    #[command(flatten)]
    pub input: FeatureArgs,
    /// Number of clusters.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Cluster PCA features with this many components instead of the raw values.
    #[arg(long)]
    pub pca: Option<usize>,
    /// Runs from different k-means++ initialisations; the lowest inertia wins.
    #[arg(long, default_value_t = 1)]
    pub n_init: usize,
    #[arg(long, value_enum, default_value = "lloyd")]
    pub algorithm: KMeansAlgorithmArg,
    #[arg(long, default_value_t = 300)]
    pub max_iter: usize,
    /// Convergence tolerance, relative to the mean feature variance.
    #[arg(long, default_value_t = 1e-4)]
    pub tol: f64,
    /// Mini-batch size (with --algorithm minibatch).
    #[arg(long, default_value_t = 1024)]
    pub batch_size: usize,
    /// Also report the silhouette coefficient, on a seeded sample of this many rows (all rows
    /// when the data has fewer; the cost grows with the square of the sample).
    #[arg(long)]
    pub silhouette: Option<usize>,
}

#[derive(Debug, Args)]
pub struct GmmArgs {
    #[command(flatten)]
    pub input: FeatureArgs,
    /// Number of components.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    /// Full covariance matrices, or diagonal ones (independent features; far cheaper with many
    /// features).
    #[arg(long, value_enum, default_value = "full")]
    pub covariance: CovarianceArg,
    /// Fit the first this many principal components instead of the raw values (a full
    /// covariance over hundreds of features is slow and needs many rows per component).
    #[arg(long)]
    pub pca: Option<usize>,
    /// Start from a K-means fit (scikit-learn's default) or from rows chosen by k-means++.
    #[arg(long, value_enum, default_value = "kmeans")]
    pub init: GmmInitArg,
    /// Runs from different starts; the highest likelihood wins.
    #[arg(long, default_value_t = 1)]
    pub n_init: usize,
    #[arg(long, default_value_t = 100)]
    pub max_iter: usize,
    /// Stop when the mean log-likelihood per row changes by less than this.
    #[arg(long, default_value_t = 1e-3)]
    pub tol: f64,
    /// Added to every covariance's diagonal.
    #[arg(long, default_value_t = 1e-6)]
    pub reg_covar: f64,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum CovarianceArg {
    Full,
    Diag,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum GmmInitArg {
    Kmeans,
    #[value(name = "k-means++")]
    KmeansPlusPlus,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum KMeansAlgorithmArg {
    Lloyd,
    Elkan,
    Minibatch,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Print counts, image shape, classes with per-class counts and pixel statistics.
    Info(DataInfoArgs),
    /// Write a PNG grid showing what a pretext task asks of a model, for a few images.
    Preview(DataPreviewArgs),
}

/// Where the data comes from; shared by every command that reads data.
#[derive(Debug, Clone, Args)]
pub struct DataArgs {
    /// An embedded data set (`fashion-mnist`, compiled in), or a directory of IDX files
    /// (`train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, optional `t10k-…`), of
    /// CIFAR-10/100 binary batches, or of class folders of PNG/JPEG images (`<class>/*.png`,
    /// or `train/<class>/…` and `test/<class>/…`).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Image folders only: the side, in pixels, images are cropped and resized to.
    #[arg(long, default_value_t = pretext_data::folder::DEFAULT_SIZE)]
    pub image_size: usize,
    /// For labelled data that comes without a test split: the stratified, seeded fraction of
    /// the training images held out as one (the same for every command, so pretraining never
    /// sees them).
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
}

/// Text data: how files are read and which entries are classes.
#[derive(Debug, Clone, Args)]
pub struct TextArgs {
    /// How text files separate documents: auto, lines, fortune (`%` lines) or paragraphs.
    #[arg(long, default_value = "auto")]
    pub text_format: pretext_data::text::TextFormat,
    /// Skip (and count) documents that are not valid UTF-8 instead of failing.
    #[arg(long)]
    pub lossy: bool,
    /// The files or sub-directories of the data directory that are classes (comma-separated);
    /// the others are unlabelled pretraining text. Default: every entry (for `fortunes`,
    /// computers, science, politics, law, food, drugs, education and startrek).
    #[arg(long, value_delimiter = ',')]
    pub classes: Option<Vec<String>>,
}

impl TextArgs {
    pub fn options(&self) -> pretext_data::text::ReadOptions {
        pretext_data::text::ReadOptions {
            format: self.text_format,
            lossy: self.lossy,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Modality {
    Image,
    Text,
}

/// A pretraining task: an image pretext task or a text one (masked tokens, contrastive views).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PretrainTask {
    Image(pretext_data::TaskKind),
    Text(pretext_train::text::TextTaskKind),
}

impl PretrainTask {
    /// A `--tasks` list for the image study; a text task in it is an error.
    pub fn images(tasks: &[PretrainTask]) -> anyhow::Result<Vec<pretext_data::TaskKind>> {
        tasks
            .iter()
            .map(|t| match t {
                PretrainTask::Image(kind) => Ok(*kind),
                PretrainTask::Text(kind) => Err(anyhow::anyhow!(
                    "{} is a text task: compare it with --modality text",
                    kind.name()
                )),
            })
            .collect()
    }

    /// A `--tasks` list for the text study; an image task in it is an error.
    pub fn texts(tasks: &[PretrainTask]) -> anyhow::Result<Vec<pretext_train::text::TextTaskKind>> {
        tasks
            .iter()
            .map(|t| match t {
                PretrainTask::Text(kind) => Ok(*kind),
                PretrainTask::Image(kind) => Err(anyhow::anyhow!(
                    "{} is an image task; the text study takes mlm and simcse",
                    kind.name()
                )),
            })
            .collect()
    }
}

impl std::str::FromStr for PretrainTask {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if let Ok(task) = s.parse() {
            return Ok(PretrainTask::Text(task));
        }
        s.parse()
            .map(PretrainTask::Image)
            .map_err(|e: pretext_data::DataError| format!("{e}, or on text mlm or simcse"))
    }
}

/// The compute device; shared by every command that computes.
#[derive(Debug, Clone, Args)]
pub struct DeviceArgs {
    /// Backend and device: flex, ndarray, wgpu[:N|:cpu|:integrated:N], vulkan[…], metal,
    /// webgpu, cuda[:N], or remote:ws://HOST:PORT (a `pretext serve`). Defaults to the first
    /// compiled-in CPU backend.
    #[arg(long)]
    pub device: Option<DeviceSpec>,
    /// The token remote devices' servers require (its first line); without it,
    /// `PRETEXT_REMOTE_TOKEN`.
    #[arg(long)]
    pub token_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct DataInfoArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Print the summary as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DataPreviewArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The pretext task: rotation, jigsaw, mae, simclr, denoise or autoencoder.
    #[arg(long)]
    pub task: pretext_data::TaskKind,
    /// A TOML file whose `[task]` table sets the task's options (its `kind` must match --task).
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// The PNG file to write.
    #[arg(long, default_value = "preview.png")]
    pub out: std::path::PathBuf,
    /// Images shown, one per row.
    #[arg(long, default_value_t = 6)]
    pub samples: usize,
    /// Screen pixels per image pixel.
    #[arg(long, default_value_t = 4)]
    pub scale: u32,
    /// Seed choosing the images and the task's random choices.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// The pretext task: rotation, jigsaw, mae, simclr, byol, moco-v3, vicreg, barlow-twins,
    /// denoise, autoencoder, or on text (`--data fortunes` or a directory of text files) mlm
    /// (masked tokens) or simcse (contrastive views); defaults to the config file's, else
    /// rotation.
    #[arg(long)]
    pub task: Option<PretrainTask>,
    /// The encoder: mlp, cnn, resnet or vit; defaults to the config file's, else the task's
    /// usual one (vit for mae, cnn otherwise).
    #[arg(long)]
    pub encoder: Option<pretext_models::EncoderKind>,
    /// A TOML config (see configs/); flags override it.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub text: TextArgs,
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Images per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Data-parallel pretraining on several devices, comma-separated (`cuda:0,cuda:1`,
    /// `wgpu:0,wgpu:1`): every batch is split into equal shards, one per device, and the batch
    /// size, learning rate and schedule stay the config's whatever their number. The first is
    /// the main device, which holds the model, the optimizer and the checkpoints. Instead of
    /// --device.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    pub devices: Option<Vec<DeviceSpec>>,
    /// Text tasks: start from this finished text pretraining run's tokenizer and encoder
    /// instead of random weights (`init_from` in the config), as SimCSE starts from a
    /// masked-token encoder.
    #[arg(long)]
    pub init_from: Option<std::path::PathBuf>,
    /// The run directory.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Replace the run in --out.
    #[arg(long)]
    pub force: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// A TOML config (configs/compare.toml, or configs/compare-text.toml with --modality
    /// text); defaults otherwise.
    #[arg(long)]
    pub config: Option<std::path::PathBuf>,
    /// Images (the default), or text: masked tokens and contrastive views started from them
    /// against TF-IDF and a Transformer trained from scratch, on `--data fortunes` (the
    /// default for text) or a directory with one text file or sub-directory per class.
    #[arg(long, value_enum, default_value = "image")]
    pub modality: Modality,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub text: TextArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Pretrain data-parallel on several devices, comma-separated, as `pretrain --devices`
    /// does; the probes run on the first. Instead of --device.
    #[arg(long, value_delimiter = ',', conflicts_with = "device")]
    pub devices: Option<Vec<DeviceSpec>>,
    /// One seed, one pretraining epoch, a shorter linear probe: a few minutes on a laptop.
    #[arg(long)]
    pub quick: bool,
    /// Also evaluate the encoders of these finished pretraining runs.
    #[arg(long)]
    pub checkpoint: Vec<std::path::PathBuf>,
    /// The pretext tasks to pretrain and compare, comma-separated, instead of the config's
    /// list: rotation, jigsaw, mae, simclr, byol, moco-v3, vicreg, barlow-twins, denoise,
    /// autoencoder; with `--modality text`, mlm and simcse.
    #[arg(long, value_delimiter = ',')]
    pub tasks: Option<Vec<PretrainTask>>,
    /// Text only: where to measure. `validation` holds out a stratified 20% of the training
    /// documents in place of the test split (and out of pretraining), so settings are chosen
    /// without looking at the test split; give it its own `--out`.
    #[arg(long, value_enum, default_value = "test")]
    pub on: EvalSplitArg,
    /// Where the pretraining runs, the cells and the report go; an interrupted study resumes
    /// from what is there.
    #[arg(long, default_value = "runs/compare")]
    pub out: std::path::PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct EmbedArgs {
    /// A pretraining run directory (holding encoder.safetensors and encoder.json).
    #[arg(long)]
    pub checkpoint: std::path::PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Which split to embed.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    #[command(flatten)]
    pub device: DeviceArgs,
    /// The `.npy` file of embeddings, `[images, dim]` float32.
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Also map the embeddings to two dimensions with t-SNE (scikit-learn's defaults, PCA
    /// start, FFT-accelerated from 10,000 images, Barnes-Hut below) into `<stem>-tsne.npy`,
    /// `[images, 2]`.
    #[arg(long)]
    pub tsne: bool,
    /// The t-SNE perplexity (lowered to fit when the split is small).
    #[arg(long, default_value_t = 30.0, requires = "tsne")]
    pub perplexity: f32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SplitArg {
    Train,
    Test,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// A pretraining run directory (holding encoder.safetensors and encoder.json).
    #[arg(long)]
    pub checkpoint: std::path::PathBuf,
    #[arg(long, value_enum)]
    pub protocol: ProtocolArg,
    /// Labelled training images per class, or `all`.
    #[arg(long, default_value = "10")]
    pub labels_per_class: pretext_data::LabelBudget,
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Where to measure: the test split, or the images the run held out of pretraining
    /// (`validation`), on which settings are chosen without looking at the test split.
    #[arg(long, value_enum, default_value = "test")]
    pub on: EvalSplitArg,
    /// The protocols' settings: a TOML file with a `[study]` table, such as a `compare`
    /// config (its budgets, seeds and protocols give way to the flags here). Cells are cached
    /// per settings.
    #[arg(long)]
    pub settings: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub device: DeviceArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum EvalSplitArg {
    Test,
    Validation,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ProtocolArg {
    Linear,
    Knn,
    /// Label propagation: the labels spread over the training images' neighbour graph; each
    /// test image takes its nearest training images' propagated classes.
    Propagation,
    /// The encoder with a linear head (started from the linear probe), trained on the labels.
    Finetune,
    /// The study's supervised baseline: the reference CNN trained from scratch on the same
    /// labelled images, with the same steps and augmentations as fine-tuning.
    Supervised,
    /// Self-training: the encoder fine-tuned on the labels and on the rest of the training
    /// images labelled by label propagation.
    SelfTraining,
    /// K-means on the test features (no labels; ACC, NMI and ARI).
    Cluster,
    /// A Gaussian mixture on the test features' first principal components (no labels).
    Gmm,
    /// SCAN: clustering heads trained on the training images' nearest neighbours (no labels).
    Scan,
}
