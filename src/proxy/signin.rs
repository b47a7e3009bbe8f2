//! The request path's side of sign-in: a sign-in request's form is read (at most
//! [`MAX_FORM_BYTES`]), handed to the sign-in threads ([`crate::signin`]) with what they need of
//! the head, and their answer written back. The worker only awaits; it never touches the store
//! or the identity provider.

use super::client::ClientConn;
use super::local::{write_response, Answered};
use super::{request_body, Gateway, GatewayError};
use crate::http1::{BodyFraming, Http1Error, RequestHead};
use crate::signin::{SigninCall, SigninRequest};

/// The largest sign-in form read (device codes, tokens: a few hundred bytes).
const MAX_FORM_BYTES: u64 = 64 * 1024;

/// Answers a sign-in endpoint; 404 when sign-in is not configured.
pub async fn answer(
    client: &mut ClientConn,
    head: &RequestHead,
    call: SigninCall,
    gw: &Gateway,
    request_id: &str,
) -> Result<Answered, GatewayError> {
    let Some(signin) = gw.state.signin.clone() else {
        return Err(GatewayError::NotFound("sign-in is not configured".into()));
    };
    if let BodyFraming::Length(n) = head.framing {
        if n > MAX_FORM_BYTES {
            return Err(Http1Error::BodyTooLarge(MAX_FORM_BYTES).into());
        }
    }
    let body = request_body::read(client, head).await?;
    let body = request_body::complete(client, body).await?;
    if body.len() > MAX_FORM_BYTES {
        // A chunked form has no length up front: it is bounded once read.
        return Err(Http1Error::BodyTooLarge(MAX_FORM_BYTES).into());
    }
    let text = |name: &str| head.header_str(name).map(str::to_string);
    let request = SigninRequest {
        call,
        base_url: base_url(signin.settings.public_url.as_deref(), head, client.is_tls()),
        query: String::from_utf8_lossy(head.query().strip_prefix(b"?").unwrap_or_default())
            .into_owned(),
        body: body.held().to_vec(),
        origin: text("origin"),
        sec_fetch_site: text("sec-fetch-site"),
        cookie: text("cookie"),
        client_ip: client.peer,
        cri_enabled: gw.state.cri.is_some(),
    };
    let reply = signin.call(request).await;
    let keep_alive = head.keep_alive && client.body_read();
    let mut extra: Vec<(&str, &str)> = vec![("content-type", reply.content_type)];
    extra.extend(reply.headers.iter().map(|(n, v)| (*n, v.as_str())));
    write_response(
        client,
        reply.status,
        &extra,
        &reply.body,
        !keep_alive,
        false,
        request_id,
    )
    .await
    .map_err(|_| GatewayError::ClientHttp(Http1Error::UnexpectedEof))?;
    Ok(Answered {
        response: super::exchange::Response {
            status: reply.status,
            bytes: reply.body.len() as u64,
            ..Default::default()
        },
        keep_alive,
    })
}

/// The URL the client reached sluice at: the configured public URL, else the scheme it used and
/// its `Host` (an authority, checked when the head was read).
fn base_url(public: Option<&str>, head: &RequestHead, tls: bool) -> String {
    match public {
        Some(url) => url.to_string(),
        None => {
            let scheme = if tls { "https" } else { "http" };
            let host = head.header_str("host").unwrap_or("localhost");
            format!("{scheme}://{host}")
        }
    }
}
