//! Reading a brand's catalog: one record per product with an id, an image
//! (path or URL) and optional label and metadata columns.
//!
//! CSV is turned into JSON records, as the report does; JSON arrays and JSON
//! Lines are read directly. Every error names the file and the line (CSV:
//! the physical line, counting the header as line 1; JSON: the line where the
//! record starts) so a user with a 40,000-row export can find the culprit.
//!
//! ```
//! use lookalike::catalog::{Catalog, CatalogFormat, Columns};
//! let csv = "id,image,kind\n1,a.jpg,shoe\n2,b.jpg,bag\n";
//! let cat = Catalog::parse(csv, "demo.csv", CatalogFormat::Csv, &Columns::default()).unwrap();
//! assert_eq!(cat.products[1].id, "2");
//! assert_eq!(cat.products[1].image, "b.jpg");
//! assert_eq!(cat.products[1].metadata["kind"], "bag");
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::HashMap;

/// Column names tried, in order, when the user does not name the id column.
pub const ID_COLUMN_CANDIDATES: &[&str] = &["id", "product_id", "sku", "item_id"];
/// Column names tried, in order, when the user does not name the image column.
pub const IMAGE_COLUMN_CANDIDATES: &[&str] =
    &["image", "image_path", "image_url", "file", "path", "url", "img"];

/// Which columns hold the id, the image and the (optional) label.
/// `None` means "detect from the usual names".
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub id: Option<String>,
    pub image: Option<String>,
    pub label: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatalogFormat {
    Csv,
    /// A JSON array of objects.
    Json,
    /// One JSON object per line.
    JsonLines,
}

impl CatalogFormat {
    /// Guesses the format from a file name; CSV unless it ends in .json/.jsonl/.ndjson.
    pub fn from_file_name(name: &str) -> CatalogFormat {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
            CatalogFormat::JsonLines
        } else if lower.ends_with(".json") {
            CatalogFormat::Json
        } else {
            CatalogFormat::Csv
        }
    }
}

/// One product of the catalog.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Product {
    pub id: String,
    /// Path (relative to the catalog file) or http(s) URL, as written in the catalog.
    pub image: String,
    pub label: Option<String>,
    /// Every other column, kept so results can show names, prices and links.
    pub metadata: Map<String, Value>,
    /// Line of the catalog file where this record starts (1-based).
    pub line: usize,
}

#[derive(Debug, Clone)]
pub struct Catalog {
    /// The file the catalog came from, for messages.
    pub source: String,
    pub id_column: String,
    pub image_column: String,
    pub label_column: Option<String>,
    pub products: Vec<Product>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum CatalogError {
    #[error("{file}:{line}: {message}")]
    Syntax { file: String, line: usize, message: String },
    #[error("{file}: no column named '{column}' (columns: {available})")]
    MissingColumn { file: String, column: String, available: String },
    #[error(
        "{file}: cannot tell which column holds the {role}; pass --{role}-col (columns: {available})"
    )]
    UndetectedColumn { file: String, role: &'static str, available: String },
    #[error("{file}:{line}: empty product id")]
    EmptyId { file: String, line: usize },
    #[error("{file}:{line}: duplicate product id '{id}' (first seen on line {first_line})")]
    DuplicateId { file: String, line: usize, id: String, first_line: usize },
    #[error("{file}:{line}: product '{id}' has no image in column '{column}'")]
    MissingImage { file: String, line: usize, id: String, column: String },
    #[error("{file}: the catalog has no products")]
    Empty { file: String },
}

impl CatalogError {
    /// The line the error is about, when it is about one row.
    pub fn line(&self) -> Option<usize> {
        match self {
            CatalogError::Syntax { line, .. }
            | CatalogError::EmptyId { line, .. }
            | CatalogError::DuplicateId { line, .. }
            | CatalogError::MissingImage { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// A record before column roles are assigned: its fields and its first line.
struct RawRecord {
    fields: Map<String, Value>,
    line: usize,
}

impl Catalog {
    /// Parses catalog text; the first bad row is an error. `source` is only
    /// used in error messages.
    pub fn parse(
        text: &str,
        source: &str,
        format: CatalogFormat,
        columns: &Columns,
    ) -> Result<Catalog, CatalogError> {
        let (catalog, rejected) = Self::parse_rows(text, source, format, columns, false)?;
        debug_assert!(rejected.is_empty());
        Ok(catalog)
    }

    /// The text of a catalog file's bytes: UTF-8 (a byte order mark is
    /// fine), or an error naming the line of the first invalid byte.
    pub fn text_of<'b>(bytes: &'b [u8], source: &str) -> Result<&'b str, CatalogError> {
        std::str::from_utf8(bytes).map_err(|e| {
            let valid = &bytes[..e.valid_up_to()];
            let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
            let column =
                valid.len() - valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1) + 1;
            syntax(
                source,
                line,
                format!(
                    "invalid UTF-8 at byte {} (column {column}); save the catalog as UTF-8",
                    e.valid_up_to()
                ),
            )
        })
    }

    /// Parses catalog text, setting bad rows (syntax, empty or duplicate
    /// ids, missing images) aside instead of failing; problems with the file
    /// as a whole (no such column, no products) are still errors.
    pub fn parse_lenient(
        text: &str,
        source: &str,
        format: CatalogFormat,
        columns: &Columns,
    ) -> Result<(Catalog, Vec<CatalogError>), CatalogError> {
        Self::parse_rows(text, source, format, columns, true)
    }

    fn parse_rows(
        text: &str,
        source: &str,
        format: CatalogFormat,
        columns: &Columns,
        lenient: bool,
    ) -> Result<(Catalog, Vec<CatalogError>), CatalogError> {
        // Spreadsheet exports often start with a UTF-8 byte order mark.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let (header, rows) = match format {
            CatalogFormat::Csv => read_csv(text, source)?,
            CatalogFormat::Json => read_json_array(text, source)?,
            CatalogFormat::JsonLines => read_json_lines(text, source)?,
        };
        let mut rejected = Vec::new();
        let mut records = Vec::with_capacity(rows.len());
        for row in rows {
            match row {
                Ok(record) => records.push(record),
                Err(error) if lenient => rejected.push(error),
                Err(error) => return Err(error),
            }
        }
        if records.is_empty() {
            return Err(CatalogError::Empty { file: source.to_string() });
        }
        let id_column =
            resolve_column(source, &header, columns.id.as_deref(), "id", ID_COLUMN_CANDIDATES)?;
        let image_column = resolve_column(
            source,
            &header,
            columns.image.as_deref(),
            "image",
            IMAGE_COLUMN_CANDIDATES,
        )?;
        let label_column = match columns.label.as_deref() {
            Some(name) => Some(resolve_column(source, &header, Some(name), "label", &[])?),
            None => None,
        };

        let mut first_line_of_id: HashMap<String, usize> = HashMap::new();
        let mut products = Vec::with_capacity(records.len());
        for RawRecord { mut fields, line } in records {
            // Read before removing either: the id and image may share a column.
            let id = fields.get(&id_column).cloned().map(value_to_text).unwrap_or_default();
            let image = fields.get(&image_column).cloned().map(value_to_text).unwrap_or_default();
            fields.remove(&id_column);
            fields.remove(&image_column);
            let id = id.trim().to_string();
            let image = image.trim().to_string();
            let problem = if id.is_empty() {
                Some(CatalogError::EmptyId { file: source.to_string(), line })
            } else if let Some(&first_line) = first_line_of_id.get(&id) {
                Some(CatalogError::DuplicateId {
                    file: source.to_string(),
                    line,
                    id: id.clone(),
                    first_line,
                })
            } else if image.is_empty() {
                Some(CatalogError::MissingImage {
                    file: source.to_string(),
                    line,
                    id: id.clone(),
                    column: image_column.clone(),
                })
            } else {
                None
            };
            if let Some(error) = problem {
                if !lenient {
                    return Err(error);
                }
                rejected.push(error);
                continue;
            }
            first_line_of_id.insert(id.clone(), line);
            let label = label_column
                .as_ref()
                .and_then(|c| fields.get(c).cloned())
                .map(value_to_text)
                .filter(|l| !l.trim().is_empty());
            products.push(Product { id, image, label, metadata: fields, line });
        }
        let catalog =
            Catalog { source: source.to_string(), id_column, image_column, label_column, products };
        Ok((catalog, rejected))
    }

    /// The distinct labels in order of first appearance.
    pub fn label_names(&self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        self.products
            .iter()
            .filter_map(|p| p.label.clone())
            .filter(|l| seen.insert(l.clone()))
            .collect()
    }
}

/// A product's value of a metadata column as text (see `value_to_text`);
/// `None` when the column is missing, null or empty.
pub fn metadata_value(metadata: &Map<String, Value>, column: &str) -> Option<String> {
    metadata.get(column).map(|v| value_to_text(v.clone())).filter(|s| !s.is_empty())
}

/// Renders a JSON scalar as catalog text: strings as-is, numbers and booleans
/// in their JSON spelling (so an integer id 1563 becomes "1563").
fn value_to_text(value: Value) -> String {
    match value {
        Value::String(s) => s,
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn resolve_column(
    source: &str,
    header: &[String],
    requested: Option<&str>,
    role: &'static str,
    candidates: &[&str],
) -> Result<String, CatalogError> {
    let available = || header.join(", ");
    if let Some(name) = requested {
        return if header.iter().any(|h| h == name) {
            Ok(name.to_string())
        } else {
            Err(CatalogError::MissingColumn {
                file: source.to_string(),
                column: name.to_string(),
                available: available(),
            })
        };
    }
    candidates
        .iter()
        .find_map(|c| header.iter().find(|h| h.eq_ignore_ascii_case(c)).cloned())
        .ok_or_else(|| CatalogError::UndetectedColumn {
            file: source.to_string(),
            role,
            available: available(),
        })
}

fn syntax(file: &str, line: usize, message: impl Into<String>) -> CatalogError {
    CatalogError::Syntax { file: file.to_string(), line, message: message.into() }
}

/// A file's column names and its rows, each read or refused on its own.
type Rows = (Vec<String>, Vec<Result<RawRecord, CatalogError>>);

fn read_csv(text: &str, source: &str) -> Result<Rows, CatalogError> {
    let mut reader =
        csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| syntax(source, 1, e.to_string()))?
        .iter()
        .map(|h| h.trim().to_string())
        .collect();
    // Line numbers come from byte offsets: the csv crate's own line count
    // drifts on CRLF files, and users open the file in an editor to find the row.
    let mut lines = LineCounter::new(text);
    let mut records = Vec::new();
    for row in reader.records() {
        let row = match row {
            Ok(row) => row,
            Err(e) => {
                let line = e.position().map(|p| lines.line_at(p.byte() as usize)).unwrap_or(0);
                records.push(Err(syntax(source, line, e.to_string())));
                continue;
            }
        };
        let line = row.position().map(|p| lines.line_at(p.byte() as usize)).unwrap_or(0);
        let fields = header
            .iter()
            .zip(row.iter())
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect();
        records.push(Ok(RawRecord { fields, line }));
    }
    Ok((header, records))
}

/// Turns increasing byte offsets into 1-based line numbers in one pass.
struct LineCounter<'a> {
    text: &'a str,
    byte: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, byte: 0, line: 1 }
    }

    /// The line of the first character at or after `byte` that is not a
    /// line break (the csv crate can report a record as starting on the
    /// `\n` of the previous record's CRLF).
    fn line_at(&mut self, byte: usize) -> usize {
        let bytes = self.text.as_bytes();
        let mut byte = byte.min(bytes.len());
        while byte < bytes.len() && (bytes[byte] == b'\n' || bytes[byte] == b'\r') {
            byte += 1;
        }
        if byte < self.byte {
            *self = Self::new(self.text);
        }
        self.line += self.text.as_bytes()[self.byte..byte].iter().filter(|&&b| b == b'\n').count();
        self.byte = byte;
        self.line
    }
}

fn object_keys_in_order(records: &[Result<RawRecord, CatalogError>]) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    records
        .iter()
        .flatten()
        .flat_map(|r| r.fields.keys())
        .filter(|k| seen.insert(k.to_string()))
        .cloned()
        .collect()
}

fn record_from_value(value: Value, source: &str, line: usize) -> Result<RawRecord, CatalogError> {
    match value {
        Value::Object(fields) => Ok(RawRecord { fields, line }),
        other => Err(syntax(
            source,
            line,
            format!("expected a JSON object per product, found {}", json_kind(&other)),
        )),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn read_json_array(text: &str, source: &str) -> Result<Rows, CatalogError> {
    // Parse element by element so each record knows the line it starts on.
    let trimmed_start = text.len() - text.trim_start().len();
    let body = &text[trimmed_start..];
    if !body.starts_with('[') {
        return Err(syntax(source, 1, "expected a JSON array of products"));
    }
    // Offsets only grow: lines are counted once, in one pass (recounting
    // from the start for each record made 100,000 rows take minutes).
    let mut lines = LineCounter::new(text);
    let mut line_at = |offset: usize| lines.line_at(offset);
    let mut records = Vec::new();
    let mut pos = trimmed_start + 1;
    loop {
        pos += text[pos..].len() - text[pos..].trim_start().len();
        match text[pos..].chars().next() {
            None => return Err(syntax(source, line_at(pos), "unterminated JSON array")),
            Some(']') => break,
            Some(',') if !records.is_empty() => {
                pos += 1;
                continue;
            }
            _ => {}
        }
        let mut stream = serde_json::Deserializer::from_str(&text[pos..]).into_iter::<Value>();
        let value = match stream.next() {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                return Err(syntax(
                    source,
                    line_at(pos) + e.line().saturating_sub(1),
                    e.to_string(),
                ));
            }
            None => return Err(syntax(source, line_at(pos), "unterminated JSON array")),
        };
        records.push(record_from_value(value, source, line_at(pos)));
        pos += stream.byte_offset();
    }
    Ok((object_keys_in_order(&records), records))
}

fn read_json_lines(text: &str, source: &str) -> Result<Rows, CatalogError> {
    let records: Vec<_> = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let value: Value =
                serde_json::from_str(line).map_err(|e| syntax(source, index + 1, e.to_string()))?;
            record_from_value(value, source, index + 1)
        })
        .collect();
    Ok((object_keys_in_order(&records), records))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str, format: CatalogFormat) -> Result<Catalog, CatalogError> {
        Catalog::parse(text, "cat", format, &Columns::default())
    }

    #[test]
    fn invalid_utf8_names_the_line() {
        let bytes = b"id,image\n1,a.jpg\n2,b\xff.jpg\n";
        let err = Catalog::text_of(bytes, "shop.csv").unwrap_err().to_string();
        assert!(err.starts_with("shop.csv:3: invalid UTF-8 at byte 20 (column 4)"), "{err}");
        assert_eq!(Catalog::text_of("id\n\u{e9}".as_bytes(), "x").unwrap(), "id\n\u{e9}");
    }

    #[test]
    fn json_array_records_know_their_lines() {
        let rows: Vec<String> = (0..3000)
            .map(|i| format!("  {{\"id\": \"{i}\",\n   \"image\": \"{i}.jpg\"}}"))
            .collect();
        let text = format!("[\n{}\n]", rows.join(",\n"));
        let cat = parse(&text, CatalogFormat::Json).unwrap();
        assert_eq!(cat.products.len(), 3000);
        assert_eq!(cat.products[0].line, 2);
        assert_eq!(cat.products[2999].line, 2 + 2 * 2999);
        let broken = text.replacen("\"2000.jpg\"", "2000.jpg\"", 1);
        let err = parse(&broken, CatalogFormat::Json).unwrap_err().to_string();
        assert!(err.starts_with(&format!("cat:{}:", 2 + 2 * 2000 + 1)), "{err}");
    }

    #[test]
    fn csv_with_bom_crlf_and_quotes() {
        let text =
            "\u{feff}id,image,name\r\n1,a.jpg,\"Shirt, blue\"\r\n2,b.jpg,\"say \"\"hi\"\"\"\r\n";
        let cat = parse(text, CatalogFormat::Csv).unwrap();
        assert_eq!(cat.products.len(), 2);
        assert_eq!(cat.products[0].metadata["name"], "Shirt, blue");
        assert_eq!(cat.products[1].metadata["name"], "say \"hi\"");
        assert_eq!(cat.products[1].line, 3);
    }

    #[test]
    fn detects_common_column_names() {
        let cat = parse("file,product_id\nx.jpg,7\n", CatalogFormat::Csv).unwrap();
        assert_eq!((cat.id_column.as_str(), cat.image_column.as_str()), ("product_id", "file"));
        assert_eq!(cat.products[0].id, "7");
    }

    #[test]
    fn the_image_path_can_be_the_id() {
        let columns = Columns { id: Some("file".into()), image: Some("file".into()), label: None };
        let cat =
            Catalog::parse("file,kind\na.jpg,x\n", "c", CatalogFormat::Csv, &columns).unwrap();
        assert_eq!(
            (cat.products[0].id.as_str(), cat.products[0].image.as_str()),
            ("a.jpg", "a.jpg")
        );
        assert_eq!(cat.products[0].metadata.len(), 1);
    }

    #[test]
    fn duplicate_id_names_both_lines() {
        let err = parse("id,image\n1,a\n2,b\n1,c\n", CatalogFormat::Csv).unwrap_err();
        assert_eq!(err.to_string(), "cat:4: duplicate product id '1' (first seen on line 2)");
    }

    #[test]
    fn empty_id_and_missing_image_name_the_line() {
        let err = parse("id,image\n1,a\n ,b\n", CatalogFormat::Csv).unwrap_err();
        assert_eq!(err, CatalogError::EmptyId { file: "cat".into(), line: 3 });
        let err = parse("id,image\n1,\n", CatalogFormat::Csv).unwrap_err();
        assert!(err.to_string().starts_with("cat:2: product '1' has no image"), "{err}");
    }

    #[test]
    fn lenient_parsing_sets_bad_rows_aside_with_their_lines() {
        let text = "id,image\n1,a\n1,b\n,c\n2,\n3,d,extra\n4,e\n";
        let (cat, rejected) =
            Catalog::parse_lenient(text, "cat", CatalogFormat::Csv, &Columns::default()).unwrap();
        let ids: Vec<&str> = cat.products.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(ids, ["1", "4"]);
        let reasons: Vec<String> = rejected.iter().map(|e| e.to_string()).collect();
        assert_eq!(reasons.len(), 4, "{reasons:?}");
        assert!(reasons[0].starts_with("cat:6:"), "the ragged row: {reasons:?}");
        assert_eq!(reasons[1], "cat:3: duplicate product id '1' (first seen on line 2)");
        assert_eq!(reasons[2], "cat:4: empty product id");
        assert!(reasons[3].starts_with("cat:5: product '2' has no image"));
        let (_, rejected) = Catalog::parse_lenient(
            "{\"id\":1,\"image\":\"a\"}\n{bad\n",
            "c.jsonl",
            CatalogFormat::JsonLines,
            &Columns::default(),
        )
        .unwrap();
        assert!(matches!(rejected[0], CatalogError::Syntax { line: 2, .. }));
    }

    #[test]
    fn unknown_column_lists_the_available_ones() {
        let columns = Columns { id: Some("sku".into()), ..Columns::default() };
        let err =
            Catalog::parse("id,image\n1,a\n", "c.csv", CatalogFormat::Csv, &columns).unwrap_err();
        assert_eq!(err.to_string(), "c.csv: no column named 'sku' (columns: id, image)");
        let err = parse("name,price\nx,1\n", CatalogFormat::Csv).unwrap_err();
        assert!(err.to_string().contains("pass --id-col"), "{err}");
    }

    #[test]
    fn a_catalog_without_products_is_an_error() {
        assert_eq!(
            parse("id,image\n", CatalogFormat::Csv).unwrap_err(),
            CatalogError::Empty { file: "cat".into() }
        );
        assert_eq!(
            parse("[]", CatalogFormat::Json).unwrap_err(),
            CatalogError::Empty { file: "cat".into() }
        );
        assert!(matches!(
            parse("{\"id\": 1}", CatalogFormat::Json),
            Err(CatalogError::Syntax { line: 1, .. })
        ));
    }

    #[test]
    fn ragged_csv_row_is_a_syntax_error_on_its_line() {
        let err = parse("id,image\n1,a\n2,b,extra\n", CatalogFormat::Csv).unwrap_err();
        assert!(matches!(err, CatalogError::Syntax { line: 3, .. }), "{err:?}");
    }

    #[test]
    fn json_array_numbers_become_text_and_lines_are_tracked() {
        let text = "[\n {\"id\": 1, \"image\": \"a.jpg\", \"price\": 9.5},\n {\"id\": 2,\n  \"image\": \"b.jpg\"}\n]";
        let cat = parse(text, CatalogFormat::Json).unwrap();
        assert_eq!(cat.products[0].id, "1");
        assert_eq!(cat.products[0].metadata["price"], 9.5);
        assert_eq!(cat.products[1].line, 3);
        let err = parse("[{\"id\":1,\"image\":\"a\"},\n 5]", CatalogFormat::Json).unwrap_err();
        assert!(matches!(err, CatalogError::Syntax { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn json_lines_skip_blank_lines_and_report_bad_ones() {
        let cat = parse(
            "{\"id\":\"a\",\"image\":\"x\"}\n\n{\"id\":\"b\",\"image\":\"y\"}\n",
            CatalogFormat::JsonLines,
        )
        .unwrap();
        assert_eq!(cat.products[1].line, 3);
        let err =
            parse("{\"id\":\"a\",\"image\":\"x\"}\n{oops\n", CatalogFormat::JsonLines).unwrap_err();
        assert!(matches!(err, CatalogError::Syntax { line: 2, .. }), "{err:?}");
    }

    #[test]
    fn labels_come_from_the_named_column() {
        let columns = Columns { label: Some("kind".into()), ..Columns::default() };
        let cat = Catalog::parse(
            "id,image,kind\n1,a,shoe\n2,b,\n3,c,bag\n4,d,shoe\n",
            "c",
            CatalogFormat::Csv,
            &columns,
        )
        .unwrap();
        assert_eq!(cat.products[1].label, None);
        assert_eq!(cat.label_names(), vec!["shoe", "bag"]);
    }
}
