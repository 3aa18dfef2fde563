//! `/api/v1/artifacts/sha256/{hex}`: content-addressed model files. Uploads stream into the
//! blob store; downloads support Range (resume), strong ETags and immutable caching.

use actix_web::http::header::{self, ByteRangeSpec, ContentRangeSpec, HeaderValue, Range};
use actix_web::http::StatusCode;
use actix_web::{get, head, put, web, HttpRequest, HttpResponse};
use flotilla_protocol::registry::{ArtifactRef, ArtifactStored};
use flotilla_protocol::ErrorCode;
use futures_util::StreamExt;
use serde_json::json;

use crate::auth::{audit_detail, ArtifactReader, Permission, Principal};
use crate::blob::{BlobError, Sha256Digest};
use crate::error::ApiError;
use crate::startup::AppState;

/// `private`: answers need a credential (and a device may read only its own artifacts), so
/// shared caches must not keep them; the bytes never change, so the client may keep them.
const IMMUTABLE: &str = "private, max-age=31536000, immutable";

/// A device may read an artifact only while its desired state names it (a slot's model or a
/// rollout's shadow candidate); anything else answers exactly like a missing artifact, so a
/// device cannot learn what else the server stores.
async fn check_reader(
    state: &AppState,
    reader: &ArtifactReader,
    digest: &Sha256Digest,
) -> Result<(), ApiError> {
    let Some(id) = reader.device else {
        return Ok(());
    };
    let generation = *state.fleet_changes.borrow();
    let device = state
        .store
        .get_device(id)
        .await?
        .ok_or_else(|| ApiError::unauthorized("this device no longer exists"))?;
    let view = state
        .checkin
        .fleet_view(state.store.as_ref(), generation)
        .await?;
    let hex = digest.to_hex();
    let named = view
        .slots(&device)
        .iter()
        .any(|s| s.sha256 == hex || s.shadow.as_ref().is_some_and(|sh| sh.sha256 == hex));
    if named {
        Ok(())
    } else {
        Err(ApiError::not_found(format!("artifact {digest} not found")))
    }
}

fn parse_digest(hex: &str) -> Result<Sha256Digest, ApiError> {
    Sha256Digest::parse_hex(hex).ok_or_else(|| {
        ApiError::bad_request(
            ErrorCode::InvalidPath,
            format!("`{hex}` is not a sha256 digest (64 lowercase hex characters)"),
        )
    })
}

fn etag(d: &Sha256Digest) -> String {
    format!("\"sha256:{}\"", d.to_hex())
}

fn blob_error(e: BlobError) -> ApiError {
    match e {
        BlobError::TooLarge { limit } => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("artifact is larger than the server's limit of {limit} bytes"),
        ),
        BlobError::DigestMismatch { expected, actual } => ApiError::bad_request(
            ErrorCode::ArtifactMismatch,
            format!("the uploaded bytes hash to {actual}, not {expected}; nothing was stored"),
        ),
        BlobError::Interrupted(why) => ApiError::bad_request(
            ErrorCode::BadRequest,
            format!("upload interrupted: {why}; nothing was stored"),
        ),
        BlobError::NotFound(d) => ApiError::not_found(format!("artifact {d} not found")),
        BlobError::Store(cause) => ApiError::unavailable("the blob store", cause),
    }
}

/// Uploads an artifact (publisher or admin). The body is the raw file; the server hashes it
/// while storing and refuses it unless it hashes to `{hex}`. Already stored: 200, body unread.
#[utoipa::path(
    tag = "artifacts",
    params(("hex" = String, Path, description = "sha256 of the content, lowercase hex")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 201, body = ArtifactStored),
        (status = 200, description = "already stored", body = ArtifactStored),
        (status = 400, description = "bytes do not match the digest", body = flotilla_protocol::ApiErrorBody),
        (status = 413, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[put("/artifacts/sha256/{hex}")]
pub async fn upload(
    req: HttpRequest,
    principal: Principal,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::Publish)?;
    let digest = parse_digest(&path)?;
    let limit = state.settings.max_artifact_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(len) = declared {
        if len > limit {
            return Err(blob_error(BlobError::TooLarge { limit }));
        }
    }
    if let Some(size) = state.blobs.size(&digest).await.map_err(blob_error)? {
        audit_detail(
            &req,
            json!({"sha256": digest.to_hex(), "size": size, "created": false}),
        );
        return Ok(HttpResponse::Ok().json(ArtifactStored {
            artifact: ArtifactRef {
                sha256: digest.to_hex(),
                size,
            },
            created: false,
        }));
    }
    let stream = payload.map(|chunk| chunk.map_err(|e| e.to_string()));
    let info = state
        .blobs
        .put_stream(Box::pin(stream), limit, Some(digest))
        .await
        .map_err(blob_error)?;
    audit_detail(
        &req,
        json!({"sha256": info.digest.to_hex(), "size": info.size, "created": true}),
    );
    Ok(HttpResponse::Created().json(ArtifactStored {
        artifact: ArtifactRef {
            sha256: info.digest.to_hex(),
            size: info.size,
        },
        created: true,
    }))
}

/// Whether an artifact is stored, and its size (`Content-Length`).
#[utoipa::path(
    tag = "artifacts",
    params(("hex" = String, Path, description = "sha256 of the content, lowercase hex")),
    responses((status = 200, description = "stored"), (status = 404, description = "not stored")),
    security(("bearer" = []))
)]
#[head("/artifacts/sha256/{hex}")]
pub async fn exists(
    reader: ArtifactReader,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let digest = parse_digest(&path)?;
    check_reader(&state, &reader, &digest).await?;
    match state.blobs.size(&digest).await.map_err(blob_error)? {
        // A sized, never-polled body: actix writes its length as Content-Length and, for HEAD,
        // sends no body.
        Some(size) => Ok(HttpResponse::Ok()
            .content_type("application/octet-stream")
            .insert_header((header::ETAG, etag(&digest)))
            .insert_header((header::ACCEPT_RANGES, "bytes"))
            .no_chunking(size)
            .streaming(futures_util::stream::empty::<
                Result<bytes::Bytes, actix_web::Error>,
            >())),
        None => Err(ApiError::not_found(format!("artifact {digest} not found"))),
    }
}

/// Downloads an artifact (API tokens and device credentials); `Range: bytes=a-b` resumes,
/// `If-None-Match` answers 304.
#[utoipa::path(
    tag = "artifacts",
    params(("hex" = String, Path, description = "sha256 of the content, lowercase hex")),
    responses(
        (status = 200, content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "the requested range", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 304, description = "unchanged (ETag matched)"),
        (status = 404, body = flotilla_protocol::ApiErrorBody),
        (status = 416, body = flotilla_protocol::ApiErrorBody)
    ),
    security(("bearer" = []))
)]
#[get("/artifacts/sha256/{hex}")]
pub async fn download(
    req: HttpRequest,
    reader: ArtifactReader,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let digest = parse_digest(&path)?;
    check_reader(&state, &reader, &digest).await?;
    let tag = etag(&digest);
    let size = state
        .blobs
        .size(&digest)
        .await
        .map_err(blob_error)?
        .ok_or_else(|| ApiError::not_found(format!("artifact {digest} not found")))?;
    let if_none_match = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*")) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, tag))
            .finish());
    }
    let range = requested_range(&req, size)?;
    let read = state
        .blobs
        .read(&digest, range.clone())
        .await
        .map_err(blob_error)?;
    let len = read.range.end - read.range.start;
    let body = read
        .stream
        .map(|r| r.map_err(|e| actix_web::error::ErrorInternalServerError(e.to_string())));
    let mut res = if range.is_some() {
        HttpResponse::PartialContent()
    } else {
        HttpResponse::Ok()
    };
    res.content_type("application/octet-stream")
        .insert_header((header::ETAG, tag))
        .insert_header((header::CACHE_CONTROL, IMMUTABLE))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if range.is_some() {
        res.insert_header((
            header::CONTENT_RANGE,
            header::ContentRange(ContentRangeSpec::Bytes {
                range: Some((read.range.start, read.range.end - 1)),
                instance_length: Some(size),
            }),
        ));
    }
    Ok(res.no_chunking(len).streaming(body))
}

/// The one byte range a request asks for, if any. Multiple ranges are served whole (allowed by
/// RFC 9110); a range outside the file is 416.
fn requested_range(req: &HttpRequest, size: u64) -> Result<Option<std::ops::Range<u64>>, ApiError> {
    let Some(raw) = req.headers().get(header::RANGE) else {
        return Ok(None);
    };
    let unsatisfiable = || {
        let mut e = ApiError::new(
            StatusCode::RANGE_NOT_SATISFIABLE,
            ErrorCode::RangeNotSatisfiable,
            format!("the artifact has {size} bytes; the requested range is outside it"),
        );
        e.content_range = HeaderValue::from_str(&format!("bytes */{size}")).ok();
        e
    };
    let parsed: Result<Range, _> = raw
        .to_str()
        .map_err(|_| ())
        .and_then(|s| s.parse().map_err(|_| ()));
    match parsed {
        Ok(Range::Bytes(specs)) if specs.len() == 1 => {
            let spec: &ByteRangeSpec = &specs[0];
            match spec.to_satisfiable_range(size) {
                Some((start, end)) => Ok(Some(start..end + 1)),
                None => Err(unsatisfiable()),
            }
        }
        // Unparseable or multi-range: ignore the header and send the whole file.
        _ => Ok(None),
    }
}
