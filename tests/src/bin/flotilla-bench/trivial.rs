//! The check-in benchmark's reference: the least an actix-web handler can do for the same
//! request (read one header, answer 304 or a fixed body), on as many workers as the server.

use actix_web::http::header;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

/// The `ETag` the trivial handler treats as current.
pub const TRIVIAL_ETAG: &str = "\"1\"";

pub fn serve(
    listen: std::net::SocketAddr,
    workers: usize,
    body_bytes: usize,
) -> anyhow::Result<()> {
    let body = web::Bytes::from(vec![b'x'; body_bytes]);
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(move || {
            let body = body.clone();
            App::new().default_service(web::to(move |req: HttpRequest| {
                let body = body.clone();
                async move {
                    let unchanged = req
                        .headers()
                        .get(header::IF_NONE_MATCH)
                        .is_some_and(|v| v.as_bytes() == TRIVIAL_ETAG.as_bytes());
                    if unchanged {
                        HttpResponse::NotModified()
                            .insert_header((header::ETAG, TRIVIAL_ETAG))
                            .finish()
                    } else {
                        HttpResponse::Ok()
                            .insert_header((header::ETAG, TRIVIAL_ETAG))
                            .content_type("application/json")
                            .body(body)
                    }
                }
            }))
        })
        .workers(workers.max(1))
        .bind(listen)?
        .run()
        .await
    })?;
    Ok(())
}
