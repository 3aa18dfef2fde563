//! The Open Inference Protocol (KServe v2 REST) endpoints over actix-web, for any
//! [`ModelSource`].
//!
//! [`OipService`] answers each endpoint as a method, so a host can put its own extraction in
//! front (the server authenticates callers first); [`routes`] registers them all for a
//! standalone server (the agent's local API). Handlers only resolve the model, check the request
//! against its signature and map results; inference itself runs on the [`InferencePool`].

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{self, BodyStream};
use actix_web::dev::Decompress;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Responder};
use flotilla_runtime::{DataType, RuntimeError, Tensor};
use serde::Deserialize;
use serde_json::json;

use super::binary::{self, BinaryDataError, BINARY_CONTENT_TYPE, HEADER_LENGTH};
use super::error::{ErrorStyle, OipError};
use super::health::{HealthRecorder, Outcome};
use super::oip::{
    binary_outputs, parse_data, unsupported_extension, BinaryOutputs, InferRequest, InferResponse,
    ModelMetadata, RequestInput, RequestedOutput, ResponseOutput, ResponseParameters,
    ServerMetadata, TensorMetadata,
};
use super::pool::{InferencePool, PoolError};
use super::source::{Escalation, EscalationRequest, LoadedModel, ModelSource};

/// The default largest request body: 16 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 16 * 1024 * 1024;

/// How an endpoint presents itself; the parts of the protocol the agent and the server answer
/// differently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceOptions {
    /// The `name` of `GET /v2` (`flotilla-agent`, `flotilla-server`).
    pub server_name: &'static str,
    /// The serving process's version, for `GET /v2`.
    pub server_version: &'static str,
    /// The `flotilla_served_by` response parameter.
    pub served_by: &'static str,
    /// Who keeps the log that 500 messages point to (`agent`, `server`).
    pub log_owner: &'static str,
    /// How error bodies are written.
    pub error_style: ErrorStyle,
    /// Largest accepted request body, in bytes (after decompression).
    pub body_limit: usize,
}

/// The protocol's endpoints over one model source, one worker pool and one recorder. Cloning
/// is cheap (the parts are `Arc`s) and clones share the same state.
#[derive(Debug)]
pub struct OipService<S> {
    source: Arc<S>,
    pool: Arc<InferencePool>,
    recorder: Arc<HealthRecorder>,
    options: ServiceOptions,
}

impl<S> Clone for OipService<S> {
    fn clone(&self) -> Self {
        OipService {
            source: Arc::clone(&self.source),
            pool: Arc::clone(&self.pool),
            recorder: Arc::clone(&self.recorder),
            options: self.options.clone(),
        }
    }
}

impl<S: ModelSource> OipService<S> {
    /// The endpoints over these parts.
    pub fn new(
        source: Arc<S>,
        pool: Arc<InferencePool>,
        recorder: Arc<HealthRecorder>,
        options: ServiceOptions,
    ) -> OipService<S> {
        OipService {
            source,
            pool,
            recorder,
            options,
        }
    }

    /// Where the models come from.
    pub fn source(&self) -> &Arc<S> {
        &self.source
    }

    /// The worker pool inference runs on.
    pub fn pool(&self) -> &Arc<InferencePool> {
        &self.pool
    }

    /// The per-model-version figures.
    pub fn recorder(&self) -> &Arc<HealthRecorder> {
        &self.recorder
    }

    /// The presentation settings.
    pub fn options(&self) -> &ServiceOptions {
        &self.options
    }

    /// Replaces the largest accepted request body, in bytes.
    pub fn set_body_limit(&mut self, bytes: usize) {
        self.options.body_limit = bytes;
    }

    /// `error` as this endpoint answers it.
    pub fn error(&self, error: &OipError) -> HttpResponse {
        error.response(self.options.error_style)
    }

    fn answer(&self, result: Result<HttpResponse, OipError>) -> HttpResponse {
        result.unwrap_or_else(|e| self.error(&e))
    }

    /// `GET /v2`.
    pub fn server_metadata(&self) -> HttpResponse {
        HttpResponse::Ok().json(ServerMetadata {
            name: self.options.server_name,
            version: self.options.server_version,
            extensions: ["binary_tensor_data"],
        })
    }

    /// `GET /v2/health/live`: true while the process serves HTTP.
    pub fn live(&self) -> HttpResponse {
        HttpResponse::Ok().json(json!({ "live": true }))
    }

    /// `GET /v2/health/ready`. The protocol answers "false" with a 4xx.
    pub async fn ready(&self) -> HttpResponse {
        self.answer(self.source.ready().await.map(|()| {
            let mut body = json!({ "ready": true });
            if let (Some(extra), Some(map)) = (self.source.ready_details(), body.as_object_mut()) {
                map.insert("details".to_owned(), extra);
            }
            HttpResponse::Ok().json(body)
        }))
    }

    /// `GET /v2/models/{name}[/versions/{version}]`.
    pub async fn model_metadata(&self, name: &str, version: Option<&str>) -> HttpResponse {
        self.answer(self.try_model_metadata(name, version).await)
    }

    async fn try_model_metadata(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<HttpResponse, OipError> {
        let loaded = self.source.resolve(name, version).await?;
        let versions = self.source.versions(&loaded).await?;
        Ok(HttpResponse::Ok().json(ModelMetadata {
            name: &loaded.name,
            versions: versions.iter().map(String::as_str).collect(),
            platform: "onnx",
            inputs: loaded
                .model
                .inputs()
                .iter()
                .map(TensorMetadata::of)
                .collect(),
            outputs: loaded
                .model
                .outputs()
                .iter()
                .map(TensorMetadata::of)
                .collect(),
        }))
    }

    /// `GET /v2/models/{name}[/versions/{version}]/ready`.
    pub async fn model_ready(&self, name: &str, version: Option<&str>) -> HttpResponse {
        self.answer(self.source.resolve(name, version).await.map(|loaded| {
            HttpResponse::Ok().json(json!({
                "name": loaded.name,
                "version": loaded.version,
                "ready": true,
            }))
        }))
    }

    /// `POST /v2/models/{name}[/versions/{version}]/infer`.
    pub async fn infer(
        &self,
        request: &HttpRequest,
        name: &str,
        version: Option<&str>,
        payload: web::Payload,
    ) -> HttpResponse {
        self.answer(self.try_infer(request, name, version, payload).await)
    }

    async fn try_infer(
        &self,
        request: &HttpRequest,
        name: &str,
        version: Option<&str>,
        payload: web::Payload,
    ) -> Result<HttpResponse, OipError> {
        // Checked before the body is read: a length beyond any acceptable body is refused at
        // once.
        let header_length = binary::header_length(
            request
                .headers()
                .get(HEADER_LENGTH)
                .map(HeaderValue::as_bytes),
            self.options.body_limit,
        )?;
        let body = read_body(request, payload, self.options.body_limit).await?;
        let (header, binary_part) = binary::split_body(&body, header_length)?;
        // The request keeps this `Arc` to the end: a swap or an eviction meanwhile does not
        // affect it.
        let loaded = self.source.resolve(name, version).await?;
        let parsed: InferRequest = serde_json::from_slice(header)
            .map_err(|e| OipError::BadRequest(format!("malformed inference request: {e}")))?;
        if let Some(reason) = unsupported_extension(&parsed) {
            return Err(OipError::BadRequest(reason));
        }
        let binary_wanted = binary_outputs(&parsed).map_err(OipError::BadRequest)?;
        // Every declared size is checked against the bytes received before any is decoded.
        let binary_inputs = match place_binary_inputs(&parsed.inputs, binary_part) {
            Ok(placed) => placed,
            Err(error) => {
                self.recorder.record_invalid(&loaded.name, &loaded.version);
                return Err(error.into());
            }
        };
        let id = parsed.id;
        let CheckedRequest {
            inputs,
            outputs: wanted,
        } = match check_request(&loaded, parsed.inputs, &binary_inputs, parsed.outputs) {
            Ok(checked) => checked,
            Err(error) => {
                self.recorder.record_invalid(&loaded.name, &loaded.version);
                return Err(error);
            }
        };

        // Copied only for requests that may be escalated or that the source samples for a
        // shadow run.
        let shadow = self.source.sample_shadow(&loaded);
        let escalates = self.source.may_escalate(&loaded);
        let mut kept_inputs = (shadow || escalates).then(|| inputs.clone());
        let model = Arc::clone(&loaded.model);
        let queued_at = Instant::now();
        let ran = self
            .pool
            .run(move || {
                let started = Instant::now();
                let result = model.run(inputs);
                (result, started.elapsed())
            })
            .await;
        let (result, latency) = match ran {
            Ok(ran) => ran,
            Err(busy @ PoolError::Busy { .. }) => {
                self.recorder.record_rejected_busy();
                return Err(OipError::Busy(busy.to_string()));
            }
            Err(PoolError::Failed(cause)) => {
                tracing::error!(model = %loaded.name, version = %loaded.version, %cause, "inference job failed");
                self.recorder.record(
                    &loaded.name,
                    &loaded.version,
                    Outcome::Error,
                    queued_at.elapsed(),
                );
                return Err(self.inference_failed(&loaded));
            }
        };
        let outputs = match result {
            Ok(outputs) => outputs,
            Err(RuntimeError::InvalidInput(message)) => {
                self.recorder.record_invalid(&loaded.name, &loaded.version);
                return Err(OipError::BadRequest(message));
            }
            Err(cause) => {
                tracing::warn!(model = %loaded.name, version = %loaded.version, %cause, "inference failed");
                self.recorder
                    .record(&loaded.name, &loaded.version, Outcome::Error, latency);
                return Err(self.inference_failed(&loaded));
            }
        };
        let outcome = if outputs.iter().all(|t| t.data.all_finite()) {
            Outcome::Ok
        } else {
            Outcome::NonFinite
        };
        self.recorder
            .record(&loaded.name, &loaded.version, outcome, latency);
        if let (Outcome::Ok, true) = (outcome, shadow) {
            // Moved when no escalation needs them afterwards.
            let inputs = if escalates {
                kept_inputs.clone()
            } else {
                kept_inputs.take()
            };
            if let Some(inputs) = inputs {
                self.source.run_shadow(&loaded, inputs, &outputs);
            }
        }

        let selected: Vec<&Tensor> = match &wanted {
            Some(indices) => indices.iter().filter_map(|&i| outputs.get(i)).collect(),
            None => outputs.iter().collect(),
        };
        let mut served_by = self.options.served_by;
        if let (true, Some(inputs)) = (escalates, &kept_inputs) {
            let names: Vec<&str> = selected.iter().map(|t| t.name.as_str()).collect();
            let escalation = EscalationRequest {
                id: id.as_deref(),
                inputs,
                outputs: &names,
            };
            match self.source.escalate(&loaded, &escalation, &outputs).await {
                Escalation::Local => {}
                Escalation::Fallback { served_by: mark } => served_by = mark,
                Escalation::Answered {
                    body,
                    served_by: mark,
                } => match answered(body, mark, id.as_deref(), &binary_wanted) {
                    Ok(response) => return Ok(response),
                    Err(e) => {
                        tracing::warn!(model = %loaded.name, error = %e, "the escalated answer could not be re-encoded; answering locally");
                        served_by = crate::oip::SERVED_BY_EDGE_FALLBACK;
                    }
                },
            }
        }
        respond(
            InferResponse {
                model_name: &loaded.name,
                model_version: &loaded.version,
                id,
                parameters: ResponseParameters {
                    flotilla_served_by: served_by,
                },
                outputs: Vec::new(),
            },
            &selected,
            &binary_wanted,
        )
    }

    fn inference_failed(&self, loaded: &LoadedModel) -> OipError {
        OipError::Internal(format!(
            "inference failed on model `{}` version `{}`; the cause is in the {}'s log",
            loaded.name, loaded.version, self.options.log_owner
        ))
    }
}

/// Registers every protocol endpoint, each answering other methods with a 405 (with `Allow`)
/// in `service`'s error style, and `service` as shared state:
/// `App::new().configure(routes(service))`. For a standalone server; a host with routes of its
/// own calls the [`OipService`] methods from its handlers instead.
pub fn routes<S: ModelSource>(service: OipService<S>) -> impl FnOnce(&mut web::ServiceConfig) {
    let style = service.options.error_style;
    move |cfg| {
        cfg.app_data(web::Data::new(service))
            .service(endpoint("/v2", Method::GET, style, server_metadata::<S>))
            .service(endpoint("/v2/", Method::GET, style, server_metadata::<S>))
            .service(endpoint("/v2/health/live", Method::GET, style, live::<S>))
            .service(endpoint("/v2/health/ready", Method::GET, style, ready::<S>))
            .service(endpoint(
                "/v2/models/{name}",
                Method::GET,
                style,
                model_metadata::<S>,
            ))
            .service(endpoint(
                "/v2/models/{name}/versions/{version}",
                Method::GET,
                style,
                version_metadata::<S>,
            ))
            .service(endpoint(
                "/v2/models/{name}/ready",
                Method::GET,
                style,
                model_ready::<S>,
            ))
            .service(endpoint(
                "/v2/models/{name}/versions/{version}/ready",
                Method::GET,
                style,
                version_ready::<S>,
            ))
            .service(endpoint(
                "/v2/models/{name}/infer",
                Method::POST,
                style,
                infer::<S>,
            ))
            .service(endpoint(
                "/v2/models/{name}/versions/{version}/infer",
                Method::POST,
                style,
                version_infer::<S>,
            ));
    }
}

/// One path served with one method; any other method gets a JSON 405 with `Allow`, in `style`.
pub fn endpoint<F, Args>(
    path: &str,
    method: Method,
    style: ErrorStyle,
    handler: F,
) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let allowed = method.clone();
    web::resource(path)
        .route(web::method(method).to(handler))
        .default_service(web::to(move |request: HttpRequest| {
            let allowed = allowed.clone();
            async move { method_not_allowed(&request, &allowed, style) }
        }))
}

/// The 405 for `request`, whose path is served only with `allowed`.
pub fn method_not_allowed(
    request: &HttpRequest,
    allowed: &Method,
    style: ErrorStyle,
) -> HttpResponse {
    let mut response = OipError::MethodNotAllowed(format!(
        "{} is not allowed on {}; use {allowed}",
        request.method(),
        request.path()
    ))
    .response(style);
    if let Ok(value) = HeaderValue::from_str(allowed.as_str()) {
        response.headers_mut().insert(header::ALLOW, value);
    }
    response
}

async fn server_metadata<S: ModelSource>(service: web::Data<OipService<S>>) -> HttpResponse {
    service.server_metadata()
}

async fn live<S: ModelSource>(service: web::Data<OipService<S>>) -> HttpResponse {
    service.live()
}

async fn ready<S: ModelSource>(service: web::Data<OipService<S>>) -> HttpResponse {
    service.ready().await
}

async fn model_metadata<S: ModelSource>(
    service: web::Data<OipService<S>>,
    path: web::Path<String>,
) -> HttpResponse {
    service.model_metadata(&path, None).await
}

async fn version_metadata<S: ModelSource>(
    service: web::Data<OipService<S>>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    service.model_metadata(&name, Some(&version)).await
}

async fn model_ready<S: ModelSource>(
    service: web::Data<OipService<S>>,
    path: web::Path<String>,
) -> HttpResponse {
    service.model_ready(&path, None).await
}

async fn version_ready<S: ModelSource>(
    service: web::Data<OipService<S>>,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    service.model_ready(&name, Some(&version)).await
}

async fn infer<S: ModelSource>(
    service: web::Data<OipService<S>>,
    request: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    service.infer(&request, &path, None, payload).await
}

async fn version_infer<S: ModelSource>(
    service: web::Data<OipService<S>>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
) -> HttpResponse {
    let (name, version) = path.into_inner();
    service
        .infer(&request, &name, Some(&version), payload)
        .await
}

/// The answer with `response`'s fields and `outputs`, each as JSON or binary data as the
/// client asked. With any binary output the body is the JSON part then the outputs' bytes, with
/// `Inference-Header-Content-Length` and `Content-Type: application/octet-stream`, as Triton
/// answers; otherwise it is plain JSON.
fn respond<'a>(
    mut response: InferResponse<'a>,
    outputs: &[&'a Tensor],
    binary: &BinaryOutputs,
) -> Result<HttpResponse, OipError> {
    let any_binary = binary.any(outputs.iter().map(|t| t.name.as_str()));
    response.outputs = outputs
        .iter()
        .map(|t| {
            if binary.is_binary(&t.name) {
                ResponseOutput::binary(t)
            } else {
                ResponseOutput::of(t)
            }
        })
        .collect();
    if !any_binary {
        return Ok(HttpResponse::Ok().json(response));
    }
    let mut body = serde_json::to_vec(&response).map_err(|e| {
        tracing::error!(error = %e, "could not write an inference response");
        OipError::Internal("could not write the inference response".to_owned())
    })?;
    let header_length = body.len();
    let binary_length: usize = outputs
        .iter()
        .filter(|t| binary.is_binary(&t.name))
        .map(|t| binary::encoded_size(t))
        .sum();
    body.reserve_exact(binary_length);
    for tensor in outputs.iter().filter(|t| binary.is_binary(&t.name)) {
        binary::encode(&tensor.data, &mut body);
    }
    Ok(HttpResponse::Ok()
        .content_type(BINARY_CONTENT_TYPE)
        .insert_header((HEADER_LENGTH, header_length.to_string()))
        .body(body))
}

/// Another endpoint's answer (hybrid inference), marked `served_by` and with the client's `id`.
/// Returned as it came when the client wants JSON; re-encoded when it wants binary outputs.
fn answered(
    mut body: serde_json::Value,
    served_by: &'static str,
    id: Option<&str>,
    binary: &BinaryOutputs,
) -> Result<HttpResponse, String> {
    let outputs = body
        .get("outputs")
        .and_then(serde_json::Value::as_array)
        .ok_or("the answer has no outputs")?;
    let names = outputs
        .iter()
        .filter_map(|o| o.get("name").and_then(serde_json::Value::as_str));
    if !binary.any(names) {
        if let Some(object) = body.as_object_mut() {
            let parameters = object.entry("parameters").or_insert_with(|| json!({}));
            if let Some(p) = parameters.as_object_mut() {
                p.insert("flotilla_served_by".into(), served_by.into());
            }
            if let Some(id) = id {
                object.insert("id".into(), id.into());
            }
        }
        return Ok(HttpResponse::Ok().json(body));
    }
    let tensors = outputs
        .iter()
        .map(answer_tensor)
        .collect::<Result<Vec<Tensor>, String>>()?;
    let text = |key: &str| {
        body.get(key)
            .and_then(serde_json::Value::as_str)
            .unwrap_or("")
    };
    let selected: Vec<&Tensor> = tensors.iter().collect();
    respond(
        InferResponse {
            model_name: text("model_name"),
            model_version: text("model_version"),
            id: id.map(str::to_owned),
            parameters: ResponseParameters {
                flotilla_served_by: served_by,
            },
            outputs: Vec::new(),
        },
        &selected,
        binary,
    )
    .map_err(|e| e.to_string())
}

/// One output of a JSON answer as a tensor.
fn answer_tensor(output: &serde_json::Value) -> Result<Tensor, String> {
    #[derive(serde::Deserialize)]
    struct Output {
        name: String,
        datatype: String,
        shape: Vec<usize>,
        data: serde_json::Value,
    }
    let output = Output::deserialize(output).map_err(|e| format!("an output is malformed: {e}"))?;
    let datatype = DataType::from_name(&output.datatype).ok_or_else(|| {
        format!(
            "output `{}` has datatype `{}`",
            output.name, output.datatype
        )
    })?;
    let data = serde_json::value::to_raw_value(&output.data)
        .and_then(|raw| parse_data(datatype, &raw))
        .map_err(|e| format!("output `{}` has invalid data: {e}", output.name))?;
    if output
        .shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        != Some(data.len())
    {
        return Err(format!("output `{}` does not fill its shape", output.name));
    }
    Ok(Tensor {
        name: output.name,
        shape: output.shape,
        data,
    })
}

/// Reads the whole body, decompressed, refusing more than `limit` bytes.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<web::Bytes, OipError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(OipError::PayloadTooLarge { limit });
    }
    let stream = BodyStream::new(Decompress::from_headers(
        payload.into_inner(),
        request.headers(),
    ));
    match body::to_bytes_limited(stream, limit).await {
        Err(_) => Err(OipError::PayloadTooLarge { limit }),
        Ok(Err(e)) => Err(OipError::BadRequest(format!(
            "could not read the request body: {e}"
        ))),
        Ok(Ok(bytes)) => Ok(bytes),
    }
}

/// Each input's binary data (`None` for JSON inputs), once the declared sizes are known to
/// cover `binary_part` exactly.
fn place_binary_inputs<'a>(
    inputs: &[RequestInput],
    binary_part: &'a [u8],
) -> Result<Vec<Option<&'a [u8]>>, BinaryDataError> {
    let declared = inputs
        .iter()
        .map(|i| {
            Ok((
                i.name.as_str(),
                binary::declared_size(&i.name, i.parameters.as_ref())?,
            ))
        })
        .collect::<Result<Vec<_>, BinaryDataError>>()?;
    let ranges = binary::locate(&declared, binary_part.len())?;
    Ok(ranges
        .into_iter()
        .map(|r| r.and_then(|r| binary_part.get(r)))
        .collect())
}

/// A request that fits its model.
struct CheckedRequest {
    /// The input tensors, in request order (the runtime puts them in graph order).
    inputs: Vec<Tensor>,
    /// Indices of the requested outputs in the model's outputs; `None`: all of them.
    outputs: Option<Vec<usize>>,
}

/// Checks a request against the model's signature and builds its tensors. The error is the
/// message for the client.
fn check_request(
    loaded: &LoadedModel,
    inputs: Vec<RequestInput>,
    binary_inputs: &[Option<&[u8]>],
    outputs: Option<Vec<RequestedOutput>>,
) -> Result<CheckedRequest, OipError> {
    let specs = loaded.model.inputs();
    let mut given = vec![false; specs.len()];
    let mut tensors = Vec::with_capacity(inputs.len());
    for (input, binary_data) in inputs.into_iter().zip(binary_inputs) {
        let Some(index) = specs.iter().position(|s| s.name == input.name) else {
            return Err(bad(format!(
                "unknown input `{}`; model `{}` takes {}",
                input.name,
                loaded.name,
                names(specs.iter().map(|s| s.name.as_str()))
            )));
        };
        let spec = &specs[index];
        if std::mem::replace(&mut given[index], true) {
            return Err(bad(format!(
                "input `{}` is given more than once",
                input.name
            )));
        }
        let datatype = DataType::from_name(&input.datatype).ok_or_else(|| {
            bad(format!(
                "input `{}` has datatype `{}`, which is not supported; supported: {}",
                input.name,
                input.datatype,
                names(DataType::ALL.iter().map(|d| d.name()))
            ))
        })?;
        if datatype != spec.datatype {
            return Err(bad(format!(
                "input `{}` must be {}, got {datatype}",
                spec.name, spec.datatype
            )));
        }
        if !spec.accepts_shape(&input.shape) {
            return Err(bad(format!(
                "input `{}` must have shape {} (-1: any size), got {}",
                spec.name,
                shape_text(&spec.shape),
                shape_text(&input.shape)
            )));
        }
        let elements = input
            .shape
            .iter()
            .try_fold(1usize, |acc, &d| acc.checked_mul(d));
        let data = match (binary_data, &input.data) {
            (Some(_), Some(_)) => {
                return Err(BinaryDataError::Size(format!(
                    "input `{}` has both `data` and `binary_data_size`; send one",
                    spec.name
                ))
                .into())
            }
            (None, None) => {
                return Err(bad(format!(
                    "input `{}` has no `data` (nor `binary_data_size` for binary data)",
                    spec.name
                )))
            }
            (Some(bytes), None) => binary::decode(&spec.name, datatype, elements, bytes)?,
            (None, Some(json)) => parse_data(datatype, json)
                .map_err(|e| bad(format!("input `{}` has invalid data: {e}", spec.name)))?,
        };
        if elements != Some(data.len()) {
            return Err(bad(format!(
                "input `{}` has shape {} ({} values) but {} values in `data`",
                spec.name,
                shape_text(&input.shape),
                elements.map_or_else(|| "too many".to_owned(), |n| n.to_string()),
                data.len()
            )));
        }
        tensors.push(Tensor {
            name: input.name,
            shape: input.shape,
            data,
        });
    }
    if let Some(missing) = specs.iter().zip(&given).find(|(_, &g)| !g) {
        return Err(bad(format!("missing input `{}`", missing.0.name)));
    }

    let Some(outputs) = outputs else {
        return Ok(CheckedRequest {
            inputs: tensors,
            outputs: None,
        });
    };
    let declared = loaded.model.outputs();
    let mut wanted: Vec<usize> = Vec::with_capacity(outputs.len());
    for output in outputs {
        let Some(index) = declared.iter().position(|s| s.name == output.name) else {
            return Err(bad(format!(
                "unknown output `{}`; model `{}` returns {}",
                output.name,
                loaded.name,
                names(declared.iter().map(|s| s.name.as_str()))
            )));
        };
        if wanted.contains(&index) {
            return Err(bad(format!(
                "output `{}` is requested more than once",
                output.name
            )));
        }
        wanted.push(index);
    }
    Ok(CheckedRequest {
        inputs: tensors,
        outputs: Some(wanted),
    })
}

fn bad(message: String) -> OipError {
    OipError::BadRequest(message)
}

fn names<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let quoted: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    if quoted.is_empty() {
        "nothing".to_owned()
    } else {
        quoted.join(", ")
    }
}

fn shape_text<T: std::fmt::Display>(shape: &[T]) -> String {
    let dims: Vec<String> = shape.iter().map(ToString::to_string).collect();
    format!("[{}]", dims.join(", "))
}
