//! `pretext serve`: host this machine's device for remote training, over WebSocket on a trusted
//! network or over Iroh on any network, refusing every session that does not present the token.

use crate::cli::ServeArgs;

#[cfg(feature = "remote")]
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    use std::io::Write;

    use anyhow::Context;
    use burn::server::{RemoteServer, TokenAuthorizer};

    use crate::cli::{IrohRelaysArg, ServeTransport};
    use crate::device::{Backend, TOKEN_VARIABLE, remote_token, resolve};

    let token = remote_token(&args.device)?.with_context(|| {
        format!(
            "pretext serve needs a token every client must present: --token-file FILE or \
             {TOKEN_VARIABLE}"
        )
    })?;
    if args.device.device.as_ref().map(|d| d.backend) == Some(Backend::Remote) {
        anyhow::bail!("pretext serve hosts a device of this machine, not a remote one");
    }
    let iroh = args.transport == ServeTransport::Iroh;
    if iroh && args.host.is_some() {
        anyhow::bail!(
            "--host is for --transport websocket: Iroh listens on every interface, since it \
             authenticates the server and encrypts the traffic"
        );
    }
    if !iroh && (args.identity_file.is_some() || args.relays != IrohRelaysArg::Disabled) {
        anyhow::bail!("--identity-file and --relays are for --transport iroh");
    }
    let (spec, device) = resolve(&args.device)?;
    let authorizer =
        TokenAuthorizer::new(token.as_str()).map_err(|_| anyhow::anyhow!("the token is empty"))?;
    let server = RemoteServer::new([device]).with_authorizer(authorizer);
    if iroh {
        let (transport, announcement) = iroh_transport(&args)?;
        println!("serving {spec} {announcement}");
        std::io::stdout().flush()?;
        return server.serve(transport).context("serving over Iroh failed");
    }
    let host = args.host.unwrap_or([127, 0, 0, 1].into());
    let listener = std::net::TcpListener::bind((host, args.port))
        .with_context(|| format!("cannot listen on {host}:{}", args.port))?;
    let address = listener.local_addr()?;
    println!("serving {spec} on ws://{address}; use --device remote:ws://{address}");
    std::io::stdout().flush()?;
    server
        .serve(burn::server::WebSocketTransport::from_listener(listener))
        .with_context(|| format!("serving on {address} failed"))
}

/// The Iroh transport `args` ask for, and the line telling clients how to reach it.
#[cfg(feature = "remote")]
fn iroh_transport(args: &ServeArgs) -> anyhow::Result<(burn::server::IrohTransport, String)> {
    use anyhow::Context;
    use burn::server::{IrohIdentity, IrohRelays, IrohTransport};

    use crate::cli::IrohRelaysArg;

    let relays = match args.relays {
        IrohRelaysArg::Disabled => IrohRelays::Disabled,
        IrohRelaysArg::Public => IrohRelays::Public,
    };
    let identity = match &args.identity_file {
        Some(path) => IrohIdentity::load_or_create(path)
            .with_context(|| format!("cannot read or create the identity {}", path.display()))?,
        None => IrohIdentity::random(),
    };
    // Iroh binds the port itself and does not say which one the system chose, so a free one
    // is picked here: clients must be told it when relays are off.
    let port = match args.port {
        0 => std::net::UdpSocket::bind(("0.0.0.0", 0))
            .and_then(|s| s.local_addr())
            .context("cannot find a free UDP port")?
            .port(),
        port => port,
    };
    let transport = IrohTransport::new(identity)
        .with_relays(relays.clone())
        .with_port(port);
    let id = transport.id();
    let mut announcement = format!(
        "over Iroh as {id} on UDP port {port}, relays {relays}; use --device \
         remote:iroh://{id}@HOST:{port}, HOST this machine's name or address"
    );
    if relays != IrohRelays::Disabled {
        announcement.push_str(&format!(", or remote:iroh://{id} through n0's relays"));
    }
    if args.identity_file.is_none() {
        announcement.push_str(" (a new id each start: --identity-file keeps one)");
    }
    Ok((transport, announcement))
}

#[cfg(not(feature = "remote"))]
pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "remote devices are not compiled into this build; rebuild with `cargo build --release \
         --features remote`"
    )
}
