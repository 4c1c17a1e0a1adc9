//! `--device`: which backend runs the tensors, chosen at run time among those compiled in.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::cli::DeviceArgs;

/// A backend of Burn's runtime dispatch, and the cargo feature that compiles it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Flex,
    NdArray,
    Wgpu,
    Vulkan,
    Metal,
    WebGpu,
    Cuda,
    Remote,
}

impl Backend {
    pub const ALL: [Backend; 8] = [
        Backend::Flex,
        Backend::NdArray,
        Backend::Wgpu,
        Backend::Vulkan,
        Backend::Metal,
        Backend::WebGpu,
        Backend::Cuda,
        Backend::Remote,
    ];

    /// The name on the command line, which is also the cargo feature's name.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Flex => "flex",
            Backend::NdArray => "ndarray",
            Backend::Wgpu => "wgpu",
            Backend::Vulkan => "vulkan",
            Backend::Metal => "metal",
            Backend::WebGpu => "webgpu",
            Backend::Cuda => "cuda",
            Backend::Remote => "remote",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Backend::Flex => "pure-Rust CPU backend (threads + SIMD); the default",
            Backend::NdArray => {
                "pure-Rust CPU backend on ndarray; deprecated upstream, slow convolutions"
            }
            Backend::Wgpu => "any WebGPU-capable GPU; graphics API chosen automatically",
            Backend::Vulkan => "wgpu pinned to Vulkan (SPIR-V kernels)",
            Backend::Metal => "wgpu pinned to Metal (macOS)",
            Backend::WebGpu => "wgpu pinned to the browser's WebGPU",
            Backend::Cuda => "NVIDIA GPUs through CUDA",
            Backend::Remote => "another machine's device, served by `pretext serve`",
        }
    }

    /// Whether this build has the backend's feature.
    pub fn compiled(self) -> bool {
        match self {
            Backend::Flex => cfg!(feature = "flex"),
            Backend::NdArray => cfg!(feature = "ndarray"),
            Backend::Wgpu => cfg!(feature = "wgpu"),
            Backend::Vulkan => cfg!(feature = "vulkan"),
            Backend::Metal => cfg!(feature = "metal"),
            Backend::WebGpu => cfg!(feature = "webgpu"),
            Backend::Cuda => cfg!(feature = "cuda"),
            Backend::Remote => cfg!(feature = "remote"),
        }
    }
}

/// Which adapter of a GPU backend, or which server of the remote backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Adapter {
    /// The backend's own choice (a high-performance GPU when there is one).
    Default,
    /// The N-th discrete GPU (`wgpu:N`, `cuda:N`).
    Discrete(usize),
    Integrated(usize),
    Virtual(usize),
    /// A software adapter such as Mesa's lavapipe.
    Cpu,
    /// Where a `pretext serve` listens: `ws://HOST:PORT`, or `iroh://ID[@HOST:PORT]`.
    Server(String),
}

/// A parsed `--device` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceSpec {
    pub backend: Backend,
    pub adapter: Adapter,
}

/// A `--device` value that names no backend, or one this build lacks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "unknown device '{0}': expected one of flex, ndarray, wgpu, vulkan, metal, webgpu, cuda"
    )]
    UnknownBackend(String),
    #[error(
        "invalid adapter '{adapter}' for {backend}: expected N, discrete:N, integrated:N, virtual:N or cpu"
    )]
    BadAdapter {
        backend: &'static str,
        adapter: String,
    },
    #[error(
        "the {0} backend is not compiled into this build; rebuild with `cargo build --release --features {0}`"
    )]
    NotCompiled(&'static str),
    #[error(
        "no backend is compiled into this build; enable one of the features flex, ndarray, wgpu or cuda"
    )]
    NoBackend,
    #[error("device {0} is unavailable: it failed to hold a tensor (see `pretext devices`)")]
    Unavailable(String),
    #[error(
        "invalid remote device '{0}': expected remote:ws://HOST:PORT or \
         remote:iroh://SERVER-ID[@HOST:PORT] (the id `pretext serve --transport iroh` prints)"
    )]
    BadServer(String),
    #[error(
        "cannot use {device}: {reason} (the token comes from --token-file or \
         PRETEXT_REMOTE_TOKEN and must be the server's)"
    )]
    Remote { device: String, reason: String },
    #[error("cannot read the token file {path}: {reason}")]
    Token { path: String, reason: String },
}

impl FromStr for DeviceSpec {
    type Err = DeviceError;

    fn from_str(s: &str) -> Result<Self, DeviceError> {
        let lower = s.trim().to_ascii_lowercase();
        let (name, rest) = lower.split_once(':').unwrap_or((&lower, ""));
        if name == Backend::Remote.name() {
            if ServerAddress::parse(rest).is_none() {
                return Err(DeviceError::BadServer(s.trim().to_string()));
            }
            return Ok(DeviceSpec {
                backend: Backend::Remote,
                adapter: Adapter::Server(rest.to_string()),
            });
        }
        let backend = Backend::ALL
            .into_iter()
            .find(|b| b.name() == name)
            .ok_or_else(|| DeviceError::UnknownBackend(s.to_string()))?;
        let bad = || DeviceError::BadAdapter {
            backend: backend.name(),
            adapter: rest.to_string(),
        };
        let index = |v: &str| v.parse::<usize>().map_err(|_| bad());
        let adapter = match (backend, rest.split_once(':')) {
            (_, _) if rest.is_empty() => Adapter::Default,
            (Backend::Flex | Backend::NdArray | Backend::Remote, _) => return Err(bad()),
            (Backend::Cuda, None) => Adapter::Discrete(index(rest)?),
            (Backend::Cuda, Some(_)) => return Err(bad()),
            (_, None) if rest == "cpu" => Adapter::Cpu,
            (_, None) if rest == "default" => Adapter::Default,
            (_, None) => Adapter::Discrete(index(rest)?),
            (_, Some(("discrete", n))) => Adapter::Discrete(index(n)?),
            (_, Some(("integrated", n))) => Adapter::Integrated(index(n)?),
            (_, Some(("virtual", n))) => Adapter::Virtual(index(n)?),
            (_, Some(_)) => return Err(bad()),
        };
        Ok(DeviceSpec { backend, adapter })
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.backend.name())?;
        match &self.adapter {
            Adapter::Default => Ok(()),
            Adapter::Server(address) => write!(f, ":{address}"),
            Adapter::Discrete(n) if self.backend == Backend::Cuda => write!(f, ":{n}"),
            Adapter::Discrete(n) => write!(f, ":discrete:{n}"),
            Adapter::Integrated(n) => write!(f, ":integrated:{n}"),
            Adapter::Virtual(n) => write!(f, ":virtual:{n}"),
            Adapter::Cpu => f.write_str(":cpu"),
        }
    }
}

impl DeviceSpec {
    /// The device used when none is named: a compiled-in CPU backend, flex first.
    pub fn default_compiled() -> Result<Self, DeviceError> {
        [
            Backend::Flex,
            Backend::NdArray,
            Backend::Wgpu,
            Backend::Cuda,
        ]
        .into_iter()
        .find(|b| b.compiled())
        .map(|backend| DeviceSpec {
            backend,
            adapter: Adapter::Default,
        })
        .ok_or(DeviceError::NoBackend)
    }

    /// The Burn device, or an error naming the feature to enable.
    pub fn device(&self) -> Result<Device, DeviceError> {
        self.device_with(None)
    }

    /// [`device`](Self::device), presenting `token` to a remote device's server (which
    /// connects before this returns).
    pub fn device_with(&self, token: Option<&str>) -> Result<Device, DeviceError> {
        // Only remote devices present a token.
        #[cfg(not(feature = "remote"))]
        let _ = token;
        if !self.backend.compiled() {
            return Err(DeviceError::NotCompiled(self.backend.name()));
        }
        match self.backend {
            #[cfg(feature = "flex")]
            Backend::Flex => Ok(Device::flex()),
            #[cfg(feature = "ndarray")]
            Backend::NdArray => {
                // Deprecated upstream in favour of flex; kept as a selectable, tested backend.
                #[allow(deprecated)]
                let device = Device::ndarray();
                Ok(device)
            }
            #[cfg(feature = "wgpu")]
            Backend::Wgpu => Ok(Device::wgpu(self.wgpu_kind())),
            #[cfg(feature = "vulkan")]
            Backend::Vulkan => Ok(Device::vulkan(self.wgpu_kind())),
            #[cfg(feature = "metal")]
            Backend::Metal => Ok(Device::metal(self.wgpu_kind())),
            #[cfg(feature = "webgpu")]
            Backend::WebGpu => Ok(Device::webgpu(self.wgpu_kind())),
            #[cfg(feature = "cuda")]
            Backend::Cuda => Ok(Device::cuda(match self.adapter {
                Adapter::Discrete(n) => n,
                _ => 0,
            })),
            #[cfg(feature = "remote")]
            Backend::Remote => {
                let remote = |reason: String| DeviceError::Remote {
                    device: self.to_string(),
                    reason,
                };
                let host = match &self.adapter {
                    Adapter::Server(address) => ServerAddress::parse(address),
                    _ => None,
                }
                .ok_or_else(|| DeviceError::BadServer(self.to_string()))?
                .host()
                .map_err(remote)?
                .with_credential(token.unwrap_or(""));
                Device::remote_options(&host)
                    .init()
                    .map_err(|e| remote(e.to_string()))
            }
            #[allow(unreachable_patterns)]
            other => Err(DeviceError::NotCompiled(other.name())),
        }
    }

    #[cfg(feature = "wgpu")]
    fn wgpu_kind(&self) -> burn::tensor::DeviceKind {
        use burn::tensor::DeviceKind;
        match self.adapter {
            Adapter::Default => DeviceKind::DefaultDevice,
            Adapter::Discrete(n) => DeviceKind::DiscreteGpu(n),
            Adapter::Integrated(n) => DeviceKind::IntegratedGpu(n),
            Adapter::Virtual(n) => DeviceKind::VirtualGpu(n),
            Adapter::Cpu | Adapter::Server(_) => DeviceKind::Cpu,
        }
    }
}

/// Where a remote device's server listens, as `remote:` devices write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerAddress<'a> {
    /// `ws://HOST:PORT`: unencrypted, for trusted networks.
    WebSocket(&'a str),
    /// `iroh://ID`, found through n0's public relays, or `iroh://ID@HOST:PORT`, dialled
    /// directly with no relay; authenticated (the id is the server's public key) and encrypted.
    Iroh {
        id: &'a str,
        address: Option<&'a str>,
    },
}

impl<'a> ServerAddress<'a> {
    fn parse(text: &'a str) -> Option<Self> {
        let plain = |a: &str| !a.is_empty() && !a.contains(char::is_whitespace);
        if let Some(address) = text.strip_prefix("ws://") {
            return plain(address).then_some(Self::WebSocket(text));
        }
        let rest = text.strip_prefix("iroh://")?;
        let (id, address) = match rest.split_once('@') {
            Some((id, address)) => (id, Some(address)),
            None => (rest, None),
        };
        // An Iroh endpoint id: a 32-byte public key in hexadecimal.
        let is_id = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
        let address_ok = address.is_none_or(|a| plain(a) && a.rsplit_once(':').is_some());
        (is_id && address_ok).then_some(Self::Iroh { id, address })
    }

    /// Burn's description of the server, resolving a host name to every address it has (the
    /// server may listen on only one of IPv4 and IPv6).
    #[cfg(feature = "remote")]
    fn host(self) -> Result<burn::remote::RemoteHost, String> {
        use burn::remote::{EndpointId, IrohHost, IrohRelays, RemoteHost};
        use std::net::ToSocketAddrs;
        match self {
            Self::WebSocket(url) => Ok(RemoteHost::websocket(url)),
            Self::Iroh { id, address } => {
                let id: EndpointId = id.parse().map_err(|e| format!("bad server id: {e}"))?;
                let mut host = IrohHost::new(id);
                if let Some(address) = address {
                    let resolved = address
                        .to_socket_addrs()
                        .map_err(|e| format!("cannot resolve {address}: {e}"))?;
                    host = host.with_relays(IrohRelays::Disabled);
                    for socket in resolved {
                        host = host.with_address(socket);
                    }
                }
                Ok(RemoteHost::iroh(host))
            }
        }
    }
}

/// The token presented to remote devices' servers (and required by `pretext serve`): the
/// first line of `--token-file`, else `PRETEXT_REMOTE_TOKEN`.
pub fn remote_token(args: &DeviceArgs) -> Result<Option<String>, DeviceError> {
    if let Some(path) = &args.token_file {
        let text = std::fs::read_to_string(path).map_err(|e| DeviceError::Token {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(DeviceError::Token {
                path: path.display().to_string(),
                reason: "its first line is empty".into(),
            });
        }
        return Ok(Some(token));
    }
    Ok(std::env::var(TOKEN_VARIABLE)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty()))
}

/// The environment variable holding the remote token when `--token-file` is not given.
pub const TOKEN_VARIABLE: &str = "PRETEXT_REMOTE_TOKEN";

/// `--device` as a spec and its device; the default device when none is named.
pub fn resolve(args: &DeviceArgs) -> Result<(DeviceSpec, Device), DeviceError> {
    let spec = match &args.device {
        Some(spec) => spec.clone(),
        None => DeviceSpec::default_compiled()?,
    };
    let device = spec.device_with(remote_token(args)?.as_deref())?;
    Ok((spec, device))
}

/// Runs `f`, turning a panic inside a driver into `None` without printing its backtrace.
pub fn quietly<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    caught(f).ok()
}

/// Runs `f`, turning a panic into its message without printing it or its backtrace.
fn caught<T>(f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Result<T, String> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(f);
    std::panic::set_hook(hook);
    result.map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "a panic without a message".into())
    })
}

/// Runs training on `specs`' devices. Where a device can fail under the run (several
/// devices, or a remote one whose server can go away), Burn panics on the failed read: that
/// becomes an error with its message and where the last checkpoint is, not a crash.
pub fn guarded<T>(
    specs: &[DeviceSpec],
    checkpoints: &std::path::Path,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let fragile = specs.len() > 1 || specs.iter().any(|s| s.backend == Backend::Remote);
    if !fragile {
        return f();
    }
    caught(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|message| {
        let first = message.lines().next().unwrap_or_default().to_string();
        let cause = message
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_string();
        Err(anyhow::anyhow!(
            "a device failed ({first}{}); training stopped; the last good checkpoint is kept \
             in {} (resume with --resume, on other devices if need be)",
            if cause != first {
                format!(": {cause}")
            } else {
                String::new()
            },
            checkpoints.display()
        ))
    })
}

/// Whether `device` holds a tensor and gives it back: a missing adapter or a failing driver
/// becomes an error naming the device before a run starts, not a panic in the middle of it.
fn check(spec: &DeviceSpec, device: &Device) -> Result<(), DeviceError> {
    let device = device.clone();
    let answered = quietly(move || {
        let values = [1.0f32, 2.0, 3.0];
        let t = burn::tensor::Tensor::<1>::from_floats(values, &device);
        t.into_data().try_to_vec::<f32>().ok() == Some(values.to_vec())
    });
    match answered {
        Some(true) => Ok(()),
        _ => Err(DeviceError::Unavailable(spec.to_string())),
    }
}

/// Devices as the console and reports name them: `flex`, or `cuda:0, cuda:1`.
pub fn describe(specs: &[DeviceSpec]) -> String {
    specs
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--device` or a `--devices` list as devices, in order; the default device when neither is
/// given. Each device of a list is checked first.
pub fn resolve_all(
    args: &DeviceArgs,
    list: Option<&[DeviceSpec]>,
) -> Result<(Vec<DeviceSpec>, Vec<Device>), DeviceError> {
    match list.filter(|l| !l.is_empty()) {
        Some(list) => {
            let token = remote_token(args)?;
            let mut devices = Vec::with_capacity(list.len());
            for spec in list {
                let device = spec.device_with(token.as_deref())?;
                check(spec, &device)?;
                devices.push(device);
            }
            Ok((list.to_vec(), devices))
        }
        None => {
            let (spec, device) = resolve(args)?;
            Ok((vec![spec], vec![device]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_documented_form() {
        let cases = [
            ("flex", Backend::Flex, Adapter::Default),
            ("NDARRAY", Backend::NdArray, Adapter::Default),
            ("wgpu", Backend::Wgpu, Adapter::Default),
            ("wgpu:1", Backend::Wgpu, Adapter::Discrete(1)),
            ("wgpu:cpu", Backend::Wgpu, Adapter::Cpu),
            (
                "vulkan:integrated:0",
                Backend::Vulkan,
                Adapter::Integrated(0),
            ),
            ("metal:virtual:2", Backend::Metal, Adapter::Virtual(2)),
            ("cuda", Backend::Cuda, Adapter::Default),
            ("cuda:3", Backend::Cuda, Adapter::Discrete(3)),
        ];
        for (text, backend, adapter) in cases {
            let spec: DeviceSpec = text.parse().unwrap();
            assert_eq!(spec, DeviceSpec { backend, adapter }, "{text}");
            assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
        }
    }

    #[test]
    fn rejects_bad_values_with_a_clear_message() {
        let err = "tpu".parse::<DeviceSpec>().unwrap_err();
        assert!(err.to_string().contains("unknown device 'tpu'"));
        for bad in [
            "flex:1",
            "cuda:x",
            "wgpu:discrete",
            "wgpu:foo:1",
            "cuda:cpu",
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(
                matches!(err, DeviceError::BadAdapter { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn remote_devices_are_iroh_ids_with_or_without_an_address() {
        let id = "4f".repeat(32);
        for text in [
            format!("remote:iroh://{id}"),
            format!("remote:iroh://{id}@gpu-1:7000"),
        ] {
            let spec: DeviceSpec = text.parse().unwrap();
            assert_eq!(spec.backend, Backend::Remote);
            assert_eq!(spec.to_string(), text);
        }
        for bad in [
            "remote:iroh://".to_string(),
            "remote:iroh://abc".to_string(),
            format!("remote:iroh://{}", "g".repeat(64)),
            format!("remote:iroh://{id}@"),
            format!("remote:iroh://{id}@gpu-1"),
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, DeviceError::BadServer(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn remote_devices_are_websocket_addresses() {
        let spec: DeviceSpec = "remote:ws://gpu-1:3000".parse().unwrap();
        assert_eq!(
            spec,
            DeviceSpec {
                backend: Backend::Remote,
                adapter: Adapter::Server("ws://gpu-1:3000".into()),
            }
        );
        assert_eq!(spec.to_string(), "remote:ws://gpu-1:3000");
        assert_eq!(spec.to_string().parse::<DeviceSpec>().unwrap(), spec);
        for bad in [
            "remote",
            "remote:",
            "remote:http://gpu:3000",
            "remote:ws://",
        ] {
            let err = bad.parse::<DeviceSpec>().unwrap_err();
            assert!(matches!(err, DeviceError::BadServer(_)), "{bad}: {err}");
        }
    }

    #[test]
    fn missing_feature_names_the_feature() {
        for backend in Backend::ALL.into_iter().filter(|b| !b.compiled()) {
            let spec = DeviceSpec {
                backend,
                adapter: Adapter::Default,
            };
            let err = spec.device().unwrap_err();
            assert!(
                err.to_string()
                    .contains(&format!("--features {}", backend.name()))
            );
        }
    }

    #[cfg(feature = "flex")]
    #[test]
    fn flex_is_the_default() {
        assert_eq!(
            DeviceSpec::default_compiled().unwrap().backend,
            Backend::Flex
        );
    }
}
