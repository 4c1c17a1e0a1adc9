//! End to end: `pretext serve` hosts a device on 127.0.0.1 for token holders only, over
//! WebSocket or Iroh; remote devices train as local ones do, alone or data-parallel.
#![cfg(feature = "remote")]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Stdio};

use common::{idx_split, largest_difference, pretext, train_embeddings};
use predicates::prelude::*;
use predicates::str::contains;

/// A `pretext serve` child on a free port of 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    /// What follows `remote:` in a device naming it: `ws://127.0.0.1:PORT` or
    /// `iroh://ID@127.0.0.1:PORT`.
    address: String,
    /// The first line the server printed.
    announcement: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(token_file: &Path) -> Server {
    serve_with(token_file, &[])
}

/// A server over Iroh, relays off, keeping its id in `identity`.
fn serve_iroh(token_file: &Path, identity: &Path) -> Server {
    serve_with(
        token_file,
        &[
            "--transport".as_ref(),
            "iroh".as_ref(),
            "--identity-file".as_ref(),
            identity.as_os_str(),
        ],
    )
}

fn serve_with(token_file: &Path, extra: &[&std::ffi::OsStr]) -> Server {
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("pretext"))
        .args(["serve", "--device", "flex", "--port", "0", "--token-file"])
        .arg(token_file)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // "serving flex on ws://127.0.0.1:PORT; …" or "… use --device
    // remote:iroh://ID@HOST:PORT, …"
    let address = line
        .split_whitespace()
        .find_map(|w| {
            w.starts_with("ws://").then_some(w).or_else(|| {
                w.strip_prefix("remote:")
                    .filter(|a| a.starts_with("iroh://"))
            })
        })
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .trim_end_matches([';', ','])
        .replace("@HOST:", "@127.0.0.1:");
    Server {
        child,
        address,
        announcement: line,
    }
}

fn token(dir: &Path, name: &str, value: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{value}\n")).unwrap();
    path
}

/// `pretext pretrain` of `config` on the IDX data in `dir` into `out`, presenting `token`.
fn pretrain(dir: &Path, config: &Path, token: &Path, out: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(assert_cmd::cargo::cargo_bin("pretext"));
    cmd.args(["pretrain", "--quiet", "--token-file"])
        .arg(token)
        .arg("--config")
        .arg(config)
        .arg("--data")
        .arg(dir)
        .arg("--out")
        .arg(out);
    cmd
}

/// [`pretrain`] run to its end, for assertions.
fn pretrain_run(dir: &Path, config: &Path, token: &Path, out: &Path) -> assert_cmd::Command {
    assert_cmd::Command::from_std(pretrain(dir, config, token, out))
}

#[test]
fn only_clients_with_the_token_get_in_and_garbage_does_not_stop_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let right = token(dir.path(), "right", "s3cret-token");
    let wrong = token(dir.path(), "wrong", "guess");
    let server = serve(&right);
    let device = format!("remote:{}", server.address);
    let check = |extra: &[&std::ffi::OsStr]| {
        pretext()
            .args(["devices", "--device", &device])
            .args(extra)
            .env_remove("PRETEXT_REMOTE_TOKEN")
            .assert()
    };
    for refused in [vec![], vec!["--token-file".as_ref(), wrong.as_os_str()]] {
        check(&refused)
            .code(1)
            .stderr(contains(format!("cannot use {device}")))
            .stderr(contains("panicked").not());
    }
    // Bytes that are no WebSocket handshake, then a handshake cut short.
    let port = server.address.rsplit(':').next().unwrap();
    for garbage in [
        &b"\x00\xffnot a websocket\r\n\r\n"[..],
        b"GET /session HTTP/1.1\r\n",
    ] {
        let mut stream = std::net::TcpStream::connect(format!("127.0.0.1:{port}")).unwrap();
        let _ = stream.write_all(garbage);
    }
    check(&["--token-file".as_ref(), right.as_os_str()])
        .success()
        .stdout(contains(format!("{device}: ok")));
    pretext()
        .args(["devices", "--device", &device])
        .env("PRETEXT_REMOTE_TOKEN", "s3cret-token")
        .assert()
        .success();
}

#[test]
fn serving_needs_a_token() {
    pretext()
        .args(["serve", "--device", "flex", "--port", "0"])
        .env_remove("PRETEXT_REMOTE_TOKEN")
        .assert()
        .code(1)
        .stderr(contains("needs a token"));
}

/// Two servers train, data-parallel, what one local device trains, and the run resumes on them.
#[test]
fn two_served_devices_pretrain_as_one_local_device() {
    let dir = tempfile::tempdir().unwrap();
    idx_split(dir.path(), "train", 40, 16, 16, 2);
    let right = token(dir.path(), "token", "s3cret-token");
    let config = dir.path().join("simclr.toml");
    // No batch norm: replicas normalise by their own shard's statistics.
    std::fs::write(
        &config,
        "epochs = 1\n[task]\nkind = \"simclr\"\n[encoder]\nkind = \"cnn\"\nchannels = [8]\n\
         embedding_dim = 16\nbatch_norm = false\n[loader]\nbatch_size = 8\n",
    )
    .unwrap();
    let (a, b) = (serve(&right), serve(&right));
    let run = |name: &str, devices: &[&str]| {
        let out = dir.path().join(name);
        pretrain_run(dir.path(), &config, &right, &out)
            .args(devices)
            .assert()
            .success();
        (out.clone(), train_embeddings(dir.path(), &out))
    };
    let remote = format!("remote:{},remote:{}", a.address, b.address);
    let (_, local) = run("local", &["--device", "flex"]);
    let (out, served) = run("served", &["--devices", &remote]);
    let worst = largest_difference(&local, &served);
    assert!(worst < 1e-3, "the embeddings differ by {worst}");
    pretrain_run(dir.path(), &config, &right, &out)
        .args(["--resume", "--epochs", "2", "--devices", &remote])
        .assert()
        .success();
}

/// A served device that goes away in the middle of a run ends it, without a hang, and the
/// run's last checkpoint resumes on a local device.
#[test]
fn a_server_that_goes_away_ends_the_run_and_it_resumes_locally() {
    let dir = tempfile::tempdir().unwrap();
    idx_split(dir.path(), "train", 40, 16, 16, 2);
    let right = token(dir.path(), "token", "s3cret-token");
    let config = dir.path().join("rotation.toml");
    std::fs::write(
        &config,
        "epochs = 40\n[task]\nkind = \"rotation\"\n[encoder]\nkind = \"cnn\"\nchannels = [8]\n\
         embedding_dim = 16\n[loader]\nbatch_size = 8\n[checkpoint]\nevery_steps = 2\n",
    )
    .unwrap();
    let a = serve(&right);
    let b = serve(&right);
    let out = dir.path().join("run");
    let mut run = pretrain(dir.path(), &config, &right, &out)
        .args([
            "--devices",
            &format!("remote:{},remote:{}", a.address, b.address),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let waited = |what: &str, mut done: Box<dyn FnMut() -> bool + '_>| {
        let start = std::time::Instant::now();
        while !done() {
            assert!(start.elapsed().as_secs() < 180, "no {what} after 3 minutes");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    };
    let checkpoints = out.join("checkpoints");
    waited(
        "checkpoint",
        Box::new(|| std::fs::read_dir(&checkpoints).is_ok_and(|mut d| d.next().is_some())),
    );
    drop(b);
    let mut status = None;
    waited(
        "end of the run",
        Box::new(|| {
            status = run.try_wait().unwrap();
            status.is_some()
        }),
    );
    assert!(!status.unwrap().success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains("a device failed") && !stderr.contains("panicked"),
        "{stderr}"
    );
    assert!(!out.join("encoder.safetensors").exists());
    pretrain_run(dir.path(), &config, &right, &out)
        .args(["--resume", "--device", "flex"])
        .assert()
        .success()
        .stdout(contains("encoder.safetensors"));
}

/// Over Iroh the server keeps its id across restarts, refuses a wrong token, survives stray
/// datagrams, and trains what a local device trains.
#[test]
fn an_iroh_server_keeps_its_id_and_trains_as_a_local_device() {
    let dir = tempfile::tempdir().unwrap();
    idx_split(dir.path(), "train", 40, 16, 16, 2);
    let right = token(dir.path(), "token", "s3cret-token");
    let wrong = token(dir.path(), "wrong", "guess");
    let identity = dir.path().join("server.key");
    let id = |server: &Server| server.address.split('@').next().unwrap().to_string();
    let first = id(&serve_iroh(&right, &identity));
    let server = serve_iroh(&right, &identity);
    assert_eq!(id(&server), first, "{}", server.announcement);
    assert!(server.announcement.contains("relays disabled"));
    let device = format!("remote:{}", server.address);
    pretext()
        .args(["devices", "--device", &device, "--token-file"])
        .arg(&wrong)
        .assert()
        .code(1)
        .stderr(contains(format!("cannot use {device}")))
        .stderr(contains("panicked").not());
    let port = server.address.rsplit(':').next().unwrap();
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for garbage in [&b"\x00\xffnot a QUIC packet"[..], &[0xc0; 1200]] {
        socket
            .send_to(garbage, format!("127.0.0.1:{port}"))
            .unwrap();
    }
    let config = dir.path().join("rotation.toml");
    std::fs::write(
        &config,
        "epochs = 1\n[task]\nkind = \"rotation\"\n[encoder]\nkind = \"cnn\"\nchannels = [8]\n\
         embedding_dim = 16\n[loader]\nbatch_size = 8\n",
    )
    .unwrap();
    let run = |name: &str, device: &str| {
        let out = dir.path().join(name);
        pretrain_run(dir.path(), &config, &right, &out)
            .args(["--device", device])
            .assert()
            .success();
        train_embeddings(dir.path(), &out)
    };
    let local = run("local", "flex");
    let served = run("served", &device);
    let worst = largest_difference(&local, &served);
    assert!(worst < 1e-3, "the embeddings differ by {worst}");
}
