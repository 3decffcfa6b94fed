//! One string column of a parquet file, read a row group at a time (FineWeb-edu's `text`, or a
//! researcher's own column): memory holds one row group, not the file.

use std::fs::File;
use std::path::Path;

use anyhow::Context;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::RowAccessor;
use parquet::schema::types::Type;

/// Hand every value of `column` to `row` in order, with the file bytes read so far (the row
/// groups done, for progress). A null value is an empty document; a missing column or a value
/// that is not a string is named with the file (and row).
pub fn read_column(
    path: &Path,
    column: &str,
    mut row: impl FnMut(String, u64) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let file = File::open(path).with_context(|| format!("{}: cannot read it", path.display()))?;
    let reader = SerializedFileReader::new(file).with_context(|| format!("{}: not a parquet file", path.display()))?;
    let schema = reader.metadata().file_metadata().schema();
    let fields: Vec<String> = schema.get_fields().iter().map(|f| f.name().to_string()).collect();
    let field = schema.get_fields().iter().find(|f| f.name() == column).with_context(|| {
        format!(
            "{}: no `{column}` column (it has: {}); name the text's column with --text-column",
            path.display(),
            fields.join(", ")
        )
    })?;
    let projection = Type::group_type_builder(schema.name()).with_fields(vec![field.clone()]).build()?;
    let mut done_bytes = 0u64;
    let mut index = 0usize;
    for group in 0..reader.num_row_groups() {
        let rows = reader.get_row_group(group).with_context(|| format!("{}: row group {group}", path.display()))?;
        done_bytes += reader.metadata().row_group(group).compressed_size().max(0) as u64;
        for record in rows.get_row_iter(Some(projection.clone()))? {
            index += 1;
            let record = record.with_context(|| format!("{}: row {index}: corrupt", path.display()))?;
            let text = match record.get_string(0) {
                Ok(s) => s.clone(),
                Err(_) if record.get_column_iter().next().is_some_and(|(_, f)| *f == parquet::record::Field::Null) => {
                    String::new()
                }
                Err(_) => anyhow::bail!(
                    "{}: row {index}: `{column}` is not a string; name the text's column with --text-column",
                    path.display()
                ),
            };
            row(text, done_bytes)?;
        }
    }
    Ok(())
}

/// Every value of `column` (the tests' and FineWeb's small files; large ones stream through
/// [`read_column`]).
pub fn read_texts(path: &Path, column: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    read_column(path, column, |text, _| {
        out.push(text);
        Ok(())
    })?;
    Ok(out)
}
