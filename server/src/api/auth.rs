//! API keys: `Authorization: Bearer <key>`, checked against the sha256
//! digests in the config (`[[auth.keys]]`); each key has roles, each route
//! needs one (admin has all). Without the header a request is `anonymous`
//! with every role only when `auth.allow_anonymous` is on (the local
//! default, with no keys configured). 401: no or unknown key; 403: the key
//! lacks the route's role. The caller's key id goes into audit rows.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

use super::error::{ApiError, RequestId};
use crate::config::{AuthConfig, Role};

/// sha256 of a key, lower-case hex: what `[[auth.keys]]` stores.
pub fn hash_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Who is asking and under which request id (request extension).
#[derive(Clone, Debug)]
pub struct Ctx {
    /// The request id.
    pub request_id: String,
    /// The API key id, or `anonymous`.
    pub caller: String,
}

/// The key table.
#[derive(Debug)]
pub struct Auth {
    allow_anonymous: bool,
    by_digest: HashMap<String, (String, Vec<Role>)>,
}

impl Auth {
    /// From the config's `[auth]`.
    pub fn new(config: &AuthConfig) -> Arc<Auth> {
        Arc::new(Auth {
            allow_anonymous: config.allow_anonymous,
            by_digest: config
                .keys
                .iter()
                .map(|k| (k.sha256.clone(), (k.id.clone(), k.roles.clone())))
                .collect(),
        })
    }
}

/// The role a `/v1` route needs (paths as seen inside the `/v1` router).
pub fn required_role(method: &Method, path: &str) -> Role {
    let path = path.strip_prefix("/v1").unwrap_or(path);
    match (method, path) {
        (&Method::DELETE, p) if p.starts_with("/subjects/") => Role::Admin,
        (_, p) if p == "/subjects" || p.starts_with("/subjects/") => Role::Enroll,
        (_, "/verify" | "/compare" | "/templates") => Role::Verify,
        (_, "/identify") => Role::Identify,
        _ => Role::Admin,
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        header::HeaderValue::from_static("Bearer"),
    );
    response
}

/// Middleware for the `/v1` routes.
pub async fn authorize(
    State(auth): State<Arc<Auth>>,
    mut request: Request,
    next: Next,
) -> Response {
    let role = required_role(request.method(), request.uri().path());
    let (caller, roles): (String, Vec<Role>) = match request.headers().get(header::AUTHORIZATION) {
        None if auth.allow_anonymous => ("anonymous".into(), vec![Role::Admin]),
        None => return unauthorized("missing `Authorization: Bearer <key>`"),
        Some(value) => {
            let Some(token) = value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) else {
                return unauthorized(
                    "malformed Authorization header; use `Authorization: Bearer <key>`",
                );
            };
            match auth.by_digest.get(&hash_key(token.trim())) {
                Some((id, roles)) => (id.clone(), roles.clone()),
                None => return unauthorized("unknown API key"),
            }
        }
    };
    if !roles.contains(&role) && !roles.contains(&Role::Admin) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            format!(
                "API key `{caller}` lacks the `{}` role this route needs",
                role.name()
            ),
        )
        .into_response();
    }
    let request_id = request
        .extensions()
        .get::<RequestId>()
        .map_or_else(String::new, |r| r.0.clone());
    request.extensions_mut().insert(Ctx { request_id, caller });
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_need_the_documented_roles() {
        assert_eq!(required_role(&Method::POST, "/subjects"), Role::Enroll);
        assert_eq!(required_role(&Method::GET, "/v1/subjects/42"), Role::Enroll);
        assert_eq!(required_role(&Method::DELETE, "/subjects/42"), Role::Admin);
        assert_eq!(required_role(&Method::POST, "/verify"), Role::Verify);
        assert_eq!(required_role(&Method::POST, "/identify"), Role::Identify);
        assert_eq!(required_role(&Method::GET, "/stats"), Role::Admin);
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
