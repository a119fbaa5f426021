//! `tabula lock ls | get | set | rm`: the cell's files.
//!
//! `set` creates a missing file when no `--if-generation` is given, so `set PATH ""` is also
//! how a directory is made. `get` prints contents as UTF-8 when they are, else as hex.

use std::fmt::Write as _;

use clap::Args;
use serde_json::json;
use tabula_common::{Code, Error};
use tabula_lockservice::client::{ClientOptions, FileInfo, LockClient};
use tabula_lockservice::state::{LockHolder, LockMode};

use super::cell;
use crate::output::{OutputFormat, emit};

/// `tabula lock ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The directory to list (every file can have children).
    #[arg(default_value = "/")]
    pub(crate) path: String,
}

/// `tabula lock get`.
#[derive(Debug, Args)]
pub(crate) struct GetArgs {
    /// The file to read.
    pub(crate) path: String,
}

/// `tabula lock set`.
#[derive(Debug, Args)]
pub(crate) struct SetArgs {
    /// The file to write; created (its parent must exist) if missing and no --if-generation.
    pub(crate) path: String,
    /// The new contents, as given (UTF-8).
    #[arg(allow_hyphen_values = true)]
    pub(crate) value: String,
    /// Write only if the file's generation is still G (compare-and-set).
    #[arg(long, value_name = "G")]
    pub(crate) if_generation: Option<u64>,
}

/// `tabula lock rm`.
#[derive(Debug, Args)]
pub(crate) struct RmArgs {
    /// The file to delete; it must have no children.
    pub(crate) path: String,
    /// Delete only if the file's generation is still G.
    #[arg(long, value_name = "G")]
    pub(crate) if_generation: Option<u64>,
}

/// Runs `ls`.
pub(crate) fn ls(cell_addrs: &[String], args: LsArgs, output: OutputFormat) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move {
        let listing = client.list(&args.path).await?;
        emit(
            output,
            || listing.children.join("\n"),
            || {
                json!({
                    "path": args.path,
                    "children": listing.children,
                    "revision": listing.revision,
                })
            },
        )
    })
}

/// Runs `get`.
pub(crate) fn get(
    cell_addrs: &[String],
    args: GetArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move {
        let info = client.get(&args.path).await?;
        emit(
            output,
            || file_text(&args.path, &info),
            || file_json(&args.path, &info),
        )
    })
}

/// Runs `set`.
pub(crate) fn set(
    cell_addrs: &[String],
    args: SetArgs,
    output: OutputFormat,
) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move {
        let (generation, created) = set_or_create(
            &client,
            &args.path,
            args.value.as_bytes(),
            args.if_generation,
        )
        .await?;
        emit(
            output,
            || {
                let verb = if created { "created" } else { "set" };
                format!("{verb} path={} generation={generation}", args.path)
            },
            || json!({ "path": args.path, "generation": generation, "created": created }),
        )
    })
}

/// Runs `rm`.
pub(crate) fn rm(cell_addrs: &[String], args: RmArgs, output: OutputFormat) -> anyhow::Result<()> {
    let client = cell::connect(cell_addrs, ClientOptions::default())?;
    cell::block_on(async move {
        let revision = client.delete(&args.path, args.if_generation).await?;
        emit(
            output,
            || format!("deleted path={} revision={revision}", args.path),
            || json!({ "path": args.path, "deleted": true, "revision": revision }),
        )
    })
}

/// Sets `path`; without `if_generation`, creates it if it does not exist. Answers the new
/// generation and whether the file was created.
async fn set_or_create(
    client: &LockClient,
    path: &str,
    contents: &[u8],
    if_generation: Option<u64>,
) -> Result<(u64, bool), Error> {
    match client.set(path, contents, if_generation).await {
        Ok(generation) => return Ok((generation, false)),
        Err(e) if e.code == Code::NotFound && if_generation.is_none() => {}
        Err(e) => return Err(e),
    }
    match client.create(path, contents).await {
        Ok(generation) => Ok((generation, true)),
        // Somebody created it in between: it exists now, so set it.
        Err(e) if e.code == Code::AlreadyExists => client
            .set(path, contents, None)
            .await
            .map(|generation| (generation, false)),
        Err(e) => Err(e),
    }
}

/// Contents as text: themselves if UTF-8, else lowercase hex with a note.
pub(crate) fn contents_text(contents: &[u8]) -> String {
    match std::str::from_utf8(contents) {
        Ok(s) => s.to_owned(),
        Err(_) => format!("{} (hex: not UTF-8)", hex(contents)),
    }
}

/// Bytes as lowercase hex, two digits each, no separator.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// A lock mode's name on the command line.
pub(crate) fn mode_name(mode: LockMode) -> &'static str {
    match mode {
        LockMode::Exclusive => "exclusive",
        LockMode::Shared => "shared",
    }
}

/// One lock holder as `session=S mode=M generation=G`.
pub(crate) fn holder_line(holder: &LockHolder) -> String {
    format!(
        "session={} mode={} generation={}",
        holder.session,
        mode_name(holder.mode),
        holder.generation
    )
}

/// `get`'s answer for a human: one `name  value` line per field, a line per lock holder.
fn file_text(path: &str, info: &FileInfo) -> String {
    let ephemeral = info
        .ephemeral_session
        .map_or_else(|| "no".to_owned(), |s| format!("session {s}"));
    let mut lines = vec![
        format!("path        {path}"),
        format!("contents    {}", contents_text(&info.contents)),
        format!("generation  {}", info.generation),
        format!("ephemeral   {ephemeral}"),
    ];
    if info.lock_holders.is_empty() {
        lines.push("holders     none".to_owned());
    }
    for (i, holder) in info.lock_holders.iter().enumerate() {
        let label = if i == 0 { "holders" } else { "" };
        lines.push(format!("{label:<10}  {}", holder_line(holder)));
    }
    lines.push(format!("revision    {}", info.revision));
    lines.join("\n")
}

/// `get`'s answer for a script. `contents` is UTF-8 text when `encoding` is `utf8`, else hex.
fn file_json(path: &str, info: &FileInfo) -> serde_json::Value {
    let (contents, encoding) = match std::str::from_utf8(&info.contents) {
        Ok(s) => (s.to_owned(), "utf8"),
        Err(_) => (hex(&info.contents), "hex"),
    };
    let holders: Vec<serde_json::Value> = info
        .lock_holders
        .iter()
        .map(|h| {
            json!({
                "session": h.session,
                "mode": mode_name(h.mode),
                "generation": h.generation,
            })
        })
        .collect();
    json!({
        "path": path,
        "contents": contents,
        "encoding": encoding,
        "generation": info.generation,
        "ephemeral_session": info.ephemeral_session,
        "lock_holders": holders,
        "revision": info.revision,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(contents: &[u8], holders: Vec<LockHolder>) -> FileInfo {
        FileInfo {
            contents: contents.to_vec(),
            generation: 7,
            ephemeral_session: None,
            lock_holders: holders,
            revision: 9,
        }
    }

    #[test]
    fn utf8_contents_print_as_themselves_and_others_as_hex_with_a_note() {
        assert_eq!(contents_text(b"leader=ts-1"), "leader=ts-1");
        assert_eq!(contents_text(b""), "");
        assert_eq!(
            contents_text(&[0xff, 0x00, 0x0a]),
            "ff000a (hex: not UTF-8)"
        );
        let doc = file_json("/a", &info(&[0xc3, 0x28], vec![]));
        assert_eq!(doc["contents"], "c328");
        assert_eq!(doc["encoding"], "hex");
        assert_eq!(file_json("/a", &info(b"x", vec![]))["encoding"], "utf8");
    }

    #[test]
    fn a_holder_prints_as_one_line_of_fields() {
        let holder = LockHolder {
            session: 12,
            mode: LockMode::Shared,
            generation: 40,
        };
        assert_eq!(holder_line(&holder), "session=12 mode=shared generation=40");
    }

    #[test]
    fn get_lists_every_holder_under_one_label() {
        let holders = vec![
            LockHolder {
                session: 1,
                mode: LockMode::Shared,
                generation: 5,
            },
            LockHolder {
                session: 2,
                mode: LockMode::Shared,
                generation: 6,
            },
        ];
        assert_eq!(
            file_text("/a", &info(b"v", holders)),
            "path        /a\n\
             contents    v\n\
             generation  7\n\
             ephemeral   no\n\
             holders     session=1 mode=shared generation=5\n\
             \x20           session=2 mode=shared generation=6\n\
             revision    9"
        );
        let doc = file_json("/a", &info(b"v", vec![]));
        assert_eq!(doc["ephemeral_session"], serde_json::Value::Null);
        assert_eq!(doc["lock_holders"], json!([]));
    }
}
