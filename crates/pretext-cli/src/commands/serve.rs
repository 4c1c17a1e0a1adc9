//! `pretext serve`: host this machine's device for remote training over WebSocket, refusing
//! every session that does not present the token.

use crate::cli::ServeArgs;

#[cfg(feature = "remote")]
pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    use std::io::Write;

    use anyhow::Context;
    use burn::server::{RemoteServer, TokenAuthorizer, WebSocketTransport};

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
    let (spec, device) = resolve(&args.device)?;
    let listener = std::net::TcpListener::bind((args.host, args.port))
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let address = listener.local_addr()?;
    let authorizer =
        TokenAuthorizer::new(token.as_str()).map_err(|_| anyhow::anyhow!("the token is empty"))?;
    println!("serving {spec} on ws://{address}; use --device remote:ws://{address}");
    std::io::stdout().flush()?;
    RemoteServer::new([device])
        .with_authorizer(authorizer)
        .serve(WebSocketTransport::from_listener(listener))
        .with_context(|| format!("serving on {address} failed"))
}

#[cfg(not(feature = "remote"))]
pub fn run(_args: ServeArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "remote devices are not compiled into this build; rebuild with `cargo build --release \
         --features remote`"
    )
}
