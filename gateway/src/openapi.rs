//! `/openapi.json`, generated from the handlers' `#[utoipa::path]` annotations and the
//! body types in `views`.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::views::*;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "weir gateway", description = "Uploads, datasets, notifications and live events of weir, an event-sourced dataset ingestion pipeline."),
    paths(
        crate::healthz,
        crate::metrics::handler,
        crate::uploads::single_shot,
        crate::uploads::inline_dataset,
        crate::uploads::init_multipart,
        crate::uploads::put_part,
        crate::uploads::complete,
        crate::uploads::abort,
        crate::uploads::get_upload,
        crate::datasets::list,
        crate::datasets::get_dataset,
        crate::datasets::update,
        crate::datasets::soft_delete,
        crate::datasets::restore,
        crate::datasets::preview,
        crate::datasets::list_grants,
        crate::datasets::grant,
        crate::datasets::revoke,
        crate::notifications::list,
        crate::notifications::mark_read,
        crate::events::stream,
    ),
    components(schemas(
        ErrorBody, Health, UploadView, StepView, FailureView, InitMultipart, MultipartSession,
        PartUrl, PartStored, CompletedPart, CompleteMultipart, DatasetPageView,
        DatasetSummaryView, DatasetView, VersionView, FieldSchema, DatasetUpdate,
        DatasetChange, Preview, NotificationList, NotificationView, MarkedRead, EventView,
        QualityView, ProblemView, GrantRequest, GrantView, GrantList, GrantChange
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

/// The whole API: [`ApiDoc`], and `POST /v1/query` when built with the `query` feature.
pub fn document() -> utoipa::openapi::OpenApi {
    #[allow(unused_mut)]
    let mut doc = ApiDoc::openapi();
    #[cfg(feature = "query")]
    doc.merge(crate::query::QueryDoc::openapi());
    doc
}

pub async fn handler() -> Json<utoipa::openapi::OpenApi> {
    Json(document())
}
