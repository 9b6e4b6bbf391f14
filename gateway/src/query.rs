//! `POST /v1/query`: one SQL query over the caller's datasets (weir-query), answered
//! as JSON rows, or CSV when the request asks `Accept: text/csv`. The result is
//! bounded by `max_rows` and `timeout_secs`; a query runs in a task of its own, so a
//! panic inside the engine is a 500 and not a dropped connection.

use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{OpenApi, ToSchema};
use weir_query::{Limits, QueryError};

use crate::auth::Caller;
use crate::views::ErrorBody;
use crate::{ApiError, AppState};

/// Rows a query returns unless the request asks for fewer.
pub const DEFAULT_MAX_ROWS: u64 = 10_000;
/// Most rows a request may ask for.
pub const MAX_ROWS: u64 = 100_000;
/// Seconds a query may run unless the request says otherwise, and at most.
pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
pub const MAX_TIMEOUT_SECS: f64 = 300.0;

#[derive(Debug, Deserialize, ToSchema)]
pub struct QueryRequest {
    /// One SQL query. Tables are your datasets by table name; a version, branch or tag
    /// as a quoted name: `"orders@v1"`, `"orders@main"`, `"orders@gold"`.
    pub sql: String,
    /// Rows to return at most (default 10000, at most 100000); when the result has
    /// more, the first ones come back with `truncated: true`.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_rows: Option<u64>,
    /// Seconds the query may run (default 30, at most 300).
    #[schema(minimum = 0.001, maximum = 300)]
    pub timeout_secs: Option<f64>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ColumnView {
    pub name: String,
    /// The Arrow type name (`Int64`, `Utf8`, `Timestamp(µs, "UTC")`, …).
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct QueryResult {
    pub columns: Vec<ColumnView>,
    /// One object per row, column name to value (null included).
    #[schema(value_type = Vec<Object>)]
    pub rows: Vec<serde_json::Value>,
    pub row_count: u64,
    /// The result had more rows than `max_rows`; `rows` holds the first ones.
    pub truncated: bool,
    pub elapsed_ms: u64,
}

#[derive(OpenApi)]
#[openapi(paths(run), components(schemas(QueryRequest, QueryResult, ColumnView)))]
pub struct QueryDoc;

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        match &e {
            QueryError::Timeout(_) => Self::new(StatusCode::REQUEST_TIMEOUT, e.to_string()),
            _ if e.is_caller_error() => Self::bad_request(e.to_string()),
            _ if e.is_transient() => Self::unavailable(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}

#[utoipa::path(post, path = "/v1/query", tag = "query",
    request_body = QueryRequest,
    responses(
        (status = 200, description = "the rows (CSV with a header line when the request accepts text/csv; then `Weir-Truncated: true` says the rows were cut at max_rows)",
            content((QueryResult = "application/json"), (String = "text/csv"))),
        (status = 400, description = "the SQL does not parse or plan, names a table that is not yours, is not a query, or fails while it runs", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 408, description = "the query ran longer than timeout_secs", body = ErrorBody),
        (status = 503, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn run(
    State(state): State<AppState>,
    Caller(owner): Caller,
    headers: HeaderMap,
    body: Result<Json<QueryRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(request) = body?;
    let max_rows = request.max_rows.unwrap_or(DEFAULT_MAX_ROWS);
    if !(1..=MAX_ROWS).contains(&max_rows) {
        return Err(ApiError::bad_request(format!(
            "max_rows must be between 1 and {MAX_ROWS}"
        )));
    }
    let secs = request.timeout_secs.unwrap_or(DEFAULT_TIMEOUT_SECS);
    let timeout = Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero() && secs <= MAX_TIMEOUT_SECS)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "timeout_secs must be more than 0 and at most {MAX_TIMEOUT_SECS}"
            ))
        })?;
    let csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    let engine = state.query_engine()?.clone();
    let started = Instant::now();
    let task = tokio::spawn(async move {
        let mut rows = engine
            .query(
                &owner,
                &request.sql,
                Limits {
                    max_rows: Some(max_rows),
                    timeout,
                },
            )
            .await?;
        let schema = rows.schema();
        let mut batches = Vec::new();
        while let Some(batch) = rows.next_batch().await? {
            batches.push(batch);
        }
        Ok::<_, QueryError>((schema, batches, rows.returned(), rows.truncated()))
    });
    let (schema, batches, row_count, truncated) = task
        .await
        .map_err(|e| ApiError::internal(format!("the query stopped unexpectedly: {e}")))??;
    let encode =
        |e: weir_query::output::ArrowError| ApiError::internal(format!("encoding the result: {e}"));
    if csv {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .build(Vec::new());
        writer
            .write(&arrow::array::RecordBatch::new_empty(schema.clone()))
            .map_err(encode)?;
        for batch in &batches {
            writer.write(batch).map_err(encode)?;
        }
        let mut response = (
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            writer.into_inner(),
        )
            .into_response();
        if truncated {
            response.headers_mut().insert(
                "weir-truncated",
                axum::http::HeaderValue::from_static("true"),
            );
        }
        return Ok(response);
    }
    let mut writer = arrow::json::WriterBuilder::new()
        .with_explicit_nulls(true)
        .build::<_, arrow::json::writer::JsonArray>(Vec::new());
    for batch in &batches {
        writer.write(batch).map_err(encode)?;
    }
    writer.finish().map_err(encode)?;
    let bytes = writer.into_inner();
    let rows: Vec<serde_json::Value> = if bytes.is_empty() {
        Vec::new()
    } else {
        serde_json::from_slice(&bytes)
            .map_err(|e| ApiError::internal(format!("encoding the result: {e}")))?
    };
    Ok(Json(QueryResult {
        columns: schema
            .fields()
            .iter()
            .map(|f| ColumnView {
                name: f.name().clone(),
                data_type: f.data_type().to_string(),
                nullable: f.is_nullable(),
            })
            .collect(),
        rows,
        row_count,
        truncated,
        elapsed_ms: started.elapsed().as_millis() as u64,
    })
    .into_response())
}
