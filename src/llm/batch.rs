//! The OpenAI Batch API: the line formats of batch input and output files
//! and the `/v1/files` + `/v1/batches` calls.
//!
//! Checked against the OpenAI API reference (Batch: request input and
//! `BatchRequestOutput`; Files: upload with `purpose=batch`) and vLLM's
//! `run-batch` (which reads the same input lines and writes the same
//! output lines). An input line is
//! `{"custom_id", "method": "POST", "url": "/v1/chat/completions", "body"}`;
//! an output (or error file) line is
//! `{"id", "custom_id", "response": {"status_code", "request_id", "body"} | null, "error": {"code", "message"} | null}`.
//! A `response` that is itself a chat completion (no `body`) is read too.

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::sse::Accumulator;
use super::{ChatResponse, FailReason, LlmClient, LlmError};
use crate::domain::BatchApi;

/// The endpoint every straddle batch line posts to.
pub const CHAT_ENDPOINT: &str = "/v1/chat/completions";

/// One line of a batch input file (no trailing newline), in the
/// provider's dialect: OpenAI's names the method and URL, Together's only
/// the id and the body (its documented line has just those two fields).
pub fn input_line(custom_id: &str, body: &Map<String, Value>, api: BatchApi) -> String {
    match api {
        BatchApi::OpenAi => {
            json!({"custom_id": custom_id, "method": "POST", "url": CHAT_ENDPOINT, "body": body})
        }
        BatchApi::Together => json!({"custom_id": custom_id, "body": body}),
    }
    .to_string()
}

/// A chat completion body (a whole JSON reply) as a [`ChatResponse`],
/// read exactly as a live non-streaming reply is.
pub fn completion_from_json(body: &str, fallback_model: &str) -> Result<ChatResponse, LlmError> {
    let mut acc = Accumulator::default();
    acc.push_json(body)?;
    Ok(acc.finish(0, fallback_model))
}

/// One output or error file line, borrowed from the file.
#[derive(Debug, Deserialize)]
pub struct OutputLine<'a> {
    #[serde(default)]
    pub custom_id: Option<String>,
    #[serde(default, borrow)]
    pub response: Option<&'a serde_json::value::RawValue>,
    #[serde(default, borrow)]
    pub error: Option<&'a serde_json::value::RawValue>,
}

#[derive(Debug, Deserialize)]
struct ResponseObj<'a> {
    #[serde(default)]
    status_code: Option<u16>,
    #[serde(default, borrow)]
    body: Option<&'a serde_json::value::RawValue>,
}

/// What an output line says about its request.
#[derive(Debug)]
pub enum LineResult {
    Reply(ChatResponse),
    Failed(LlmError),
}

impl OutputLine<'_> {
    /// The reply, or why there is none (the error object, a non-200
    /// status with its error body, an unreadable completion).
    pub fn result(&self, fallback_model: &str) -> LineResult {
        let err_of = |v: &str| {
            serde_json::from_str::<Value>(v)
                .ok()
                .map(|v| {
                    let v = v.get("error").cloned().unwrap_or(v);
                    let code = v["code"].as_str().unwrap_or("").to_string();
                    let msg = v["message"].as_str().unwrap_or("").to_string();
                    (code, msg)
                })
                .unwrap_or_default()
        };
        if let Some(e) = self.error.filter(|e| e.get() != "null") {
            let (code, msg) = err_of(e.get());
            let reason = match code.as_str() {
                "batch_expired" | "batch_cancelled" => FailReason::Cancelled,
                _ => FailReason::ServerError,
            };
            return LineResult::Failed(
                LlmError::new(reason, format!("batch error {code}: {msg}")).with_raw(e.get()),
            );
        }
        let Some(resp) = self.response.filter(|r| r.get() != "null") else {
            return LineResult::Failed(LlmError::new(
                FailReason::Malformed,
                "line has neither a response nor an error",
            ));
        };
        let obj: ResponseObj<'_> = match serde_json::from_str(resp.get()) {
            Ok(o) => o,
            Err(e) => {
                return LineResult::Failed(LlmError::new(
                    FailReason::Malformed,
                    format!("response is not an object: {e}"),
                ));
            }
        };
        let status = obj.status_code.unwrap_or(200);
        let body = obj.body.map(|b| b.get()).unwrap_or(resp.get());
        if status != 200 {
            let (_, msg) = err_of(body);
            let reason = match status {
                429 => FailReason::RateLimited,
                401 | 403 => FailReason::Auth,
                404 => FailReason::NotFound,
                500..=599 => FailReason::ServerError,
                _ => FailReason::BadRequest,
            };
            let mut e = LlmError::new(reason, format!("HTTP {status}: {msg}")).with_raw(body);
            e.status = Some(status);
            return LineResult::Failed(e);
        }
        match completion_from_json(body, fallback_model) {
            Ok(r) => LineResult::Reply(r),
            Err(e) => LineResult::Failed(e),
        }
    }
}

/// A batch as `/v1/batches` describes it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RemoteBatch {
    pub id: String,
    /// Lower case (Together's API answers `IN_PROGRESS`, `COMPLETED`).
    #[serde(deserialize_with = "lower")]
    pub status: String,
    #[serde(default)]
    pub input_file_id: Option<String>,
    #[serde(default)]
    pub output_file_id: Option<String>,
    #[serde(default)]
    pub error_file_id: Option<String>,
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
}

fn lower<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    String::deserialize(d).map(|s| s.to_ascii_lowercase())
}

/// What `POST /batches` answers: the batch, or Together's `{"job": batch}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Created {
    Job { job: RemoteBatch },
    Bare(RemoteBatch),
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RequestCounts {
    pub total: u64,
    pub completed: u64,
    pub failed: u64,
}

impl RemoteBatch {
    /// No further change will come (`completed`, `failed`, `expired`,
    /// `cancelled`).
    pub fn is_final(&self) -> bool {
        is_final(&self.status)
    }
}

/// Whether a batch status is final.
pub fn is_final(status: &str) -> bool {
    matches!(status, "completed" | "failed" | "expired" | "cancelled")
}

impl LlmClient {
    async fn batch_call(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, LlmError> {
        let resp = req.send().await.map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        if !status.is_success() {
            let text = self
                .read_text(resp, 64 << 10, "batch error")
                .await
                .unwrap_or_else(|e| e.raw.unwrap_or_default());
            return Err(self.status_error(status.as_u16(), &text, Default::default()));
        }
        Ok(resp)
    }

    async fn batch_json<T: serde::de::DeserializeOwned>(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<T, LlmError> {
        let bytes = self
            .batch_call(req)
            .await?
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| {
            LlmError::new(FailReason::Malformed, format!("unexpected reply: {e}"))
                .with_raw(String::from_utf8_lossy(&bytes).into_owned())
        })
    }

    /// Upload a batch input file; its file id. OpenAI's dialect posts
    /// `purpose=batch` and the file to `/files`; Together's posts
    /// `purpose=batch-api`, `file_name`, `file_type=jsonl` and the file to
    /// `/files/upload`.
    pub async fn upload_batch_file(&self, name: &str, bytes: Vec<u8>) -> Result<String, LlmError> {
        let boundary = format!("straddle-{:016x}", bytes.len() as u64 ^ 0x5bd1_e995);
        let field = |k: &str, v: &str| {
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n")
        };
        let (path, fields) = match self.batch_api() {
            BatchApi::OpenAi => ("files", field("purpose", "batch")),
            BatchApi::Together => (
                "files/upload",
                field("purpose", "batch-api")
                    + &field("file_name", name)
                    + &field("file_type", "jsonl"),
            ),
        };
        let mut body = Vec::with_capacity(bytes.len() + 500);
        body.extend_from_slice(fields.as_bytes());
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: application/jsonl\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(&bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        #[derive(Deserialize)]
        struct FileObj {
            id: String,
        }
        let f: FileObj = self
            .batch_json(
                self.http()
                    .post(format!("{}/{path}", self.base_url()))
                    .header(
                        reqwest::header::CONTENT_TYPE,
                        format!("multipart/form-data; boundary={boundary}"),
                    )
                    .body(body),
            )
            .await?;
        Ok(f.id)
    }

    /// Create a batch over an uploaded input file (24 h window). Reads
    /// the batch whether it comes bare (OpenAI) or as `{"job": batch}`
    /// (Together).
    pub async fn create_batch(
        &self,
        input_file_id: &str,
        metadata: Value,
    ) -> Result<RemoteBatch, LlmError> {
        let body = json!({"input_file_id": input_file_id, "endpoint": CHAT_ENDPOINT,
            "completion_window": "24h", "metadata": metadata});
        let reply: Created = self
            .batch_json(
                self.http()
                    .post(format!("{}/batches", self.base_url()))
                    .json(&body),
            )
            .await?;
        Ok(match reply {
            Created::Job { job } => job,
            Created::Bare(b) => b,
        })
    }

    pub async fn retrieve_batch(&self, id: &str) -> Result<RemoteBatch, LlmError> {
        self.batch_json(self.http().get(format!("{}/batches/{id}", self.base_url())))
            .await
    }

    pub async fn cancel_batch(&self, id: &str) -> Result<RemoteBatch, LlmError> {
        self.batch_json(
            self.http()
                .post(format!("{}/batches/{id}/cancel", self.base_url())),
        )
        .await
    }

    /// The most recent batches (the first page of `GET /batches`: a list
    /// object, or a bare array as Together answers).
    pub async fn list_batches(&self) -> Result<Vec<RemoteBatch>, LlmError> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Page {
            List { data: Vec<RemoteBatch> },
            Bare(Vec<RemoteBatch>),
        }
        let p: Page = self
            .batch_json(
                self.http()
                    .get(format!("{}/batches?limit=100", self.base_url())),
            )
            .await?;
        Ok(match p {
            Page::List { data } | Page::Bare(data) => data,
        })
    }

    /// The bytes of a file (an output or error file).
    pub async fn file_content(&self, file_id: &str) -> Result<Vec<u8>, LlmError> {
        let resp = self
            .batch_call(
                self.http()
                    .get(format!("{}/files/{file_id}/content", self.base_url())),
            )
            .await?;
        Ok(resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?
            .to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(line: &str) -> LineResult {
        let l: OutputLine<'_> = serde_json::from_str(line).unwrap();
        l.result("m")
    }

    #[test]
    fn output_lines_of_openai_and_vllm_read_alike() {
        let body = r#"{"id":"c1","model":"x","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}"#;
        let openai = format!(
            r#"{{"id":"b","custom_id":"b1-g0","response":{{"status_code":200,"request_id":"r","body":{body}}},"error":null}}"#
        );
        let vllm = format!(r#"{{"id":"b","custom_id":"b1-g0","response":{body}}}"#);
        for l in [openai, vllm] {
            match result(&l) {
                LineResult::Reply(r) => {
                    assert_eq!((r.text.as_str(), r.model.as_str()), ("hi", "x"))
                }
                LineResult::Failed(e) => panic!("{e:?}"),
            }
        }
        let failed = r#"{"id":"b","custom_id":"b1-g1","response":{"status_code":500,"body":{"error":{"message":"boom"}}},"error":null}"#;
        assert!(
            matches!(result(failed), LineResult::Failed(e) if e.reason == FailReason::ServerError && e.message.contains("boom"))
        );
        let expired = r#"{"id":"b","custom_id":"b1-g2","response":null,"error":{"code":"batch_expired","message":"late"}}"#;
        let together: RemoteBatch =
            serde_json::from_str(r#"{"id":"j","status":"COMPLETED"}"#).unwrap();
        assert!(together.is_final());
        assert!(
            matches!(result(expired), LineResult::Failed(e) if e.reason == FailReason::Cancelled)
        );
    }
}
