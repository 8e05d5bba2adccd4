//! The report's exports: any table as RFC 4180 CSV (header row, decimals as
//! their exact text, dates ISO) and the finance tables as an Excel workbook
//! with typed cells (numbers as numbers, money in the currency's format,
//! dates as dates) and frozen header rows.

use super::format::Money;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Date32Type, Float64Type, Int64Type};
use rust_xlsxwriter::{ExcelDateTime, Format, FormatAlign, Workbook};

/// `batches` as CSV with a header row (no rows: the header alone, if the
/// schema is known).
pub fn csv_of(batches: &[RecordBatch]) -> Result<Vec<u8>, arrow::error::ArrowError> {
    let mut out = Vec::new();
    {
        let mut writer = arrow::csv::WriterBuilder::new()
            .with_header(true)
            .with_date_format("%Y-%m-%d".to_string())
            .build(&mut out);
        for b in batches {
            writer.write(b)?;
        }
    }
    Ok(out)
}

/// The workbook of `sheets` (table name, rows): one sheet per table.
pub fn workbook(sheets: &[(String, Vec<RecordBatch>)], money: &Money) -> Result<Vec<u8>, super::ReportError> {
    let mut book = Workbook::new();
    let header = Format::new().set_bold().set_background_color("#E8EEF4").set_align(FormatAlign::Center);
    let currency = Format::new().set_num_format(money.excel_format());
    let ratio = Format::new().set_num_format("0.0000");
    let integer = Format::new().set_num_format("#,##0");
    let date = Format::new().set_num_format("yyyy-mm-dd");
    for (name, batches) in sheets {
        let sheet = book.add_worksheet();
        sheet.set_name(name.chars().take(31).collect::<String>())?;
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            sheet.write_string(0, 0, "no rows")?;
            continue;
        };
        for (c, field) in schema.fields().iter().enumerate() {
            sheet.write_string_with_format(0, c as u16, field.name(), &header)?;
            sheet.set_column_width(c as u16, (field.name().len() as f64 + 4.0).max(12.0))?;
        }
        sheet.set_freeze_panes(1, 0)?;
        let mut row: u32 = 1;
        for b in batches {
            for (c, column) in b.columns().iter().enumerate() {
                let c = c as u16;
                match column.data_type() {
                    DataType::Decimal128(..) | DataType::Decimal256(..) => {
                        let values = arrow::compute::cast(column, &DataType::Float64)?;
                        let values = values.as_primitive::<Float64Type>();
                        for i in 0..values.len() {
                            if values.is_valid(i) {
                                sheet.write_number_with_format(row + i as u32, c, values.value(i), &currency)?;
                            }
                        }
                    }
                    DataType::Float64 | DataType::Float32 => {
                        let values = arrow::compute::cast(column, &DataType::Float64)?;
                        let values = values.as_primitive::<Float64Type>();
                        for i in 0..values.len() {
                            if values.is_valid(i) && values.value(i).is_finite() {
                                sheet.write_number_with_format(row + i as u32, c, values.value(i), &ratio)?;
                            }
                        }
                    }
                    t if t.is_integer() => {
                        let values = arrow::compute::cast(column, &DataType::Int64)?;
                        let values = values.as_primitive::<Int64Type>();
                        for i in 0..values.len() {
                            if values.is_valid(i) {
                                sheet.write_number_with_format(row + i as u32, c, values.value(i) as f64, &integer)?;
                            }
                        }
                    }
                    DataType::Date32 => {
                        let values = column.as_primitive::<Date32Type>();
                        for i in 0..values.len() {
                            let Some(d) = values.is_valid(i).then(|| values.value_as_date(i)).flatten() else { continue };
                            use chrono::Datelike;
                            let d = ExcelDateTime::from_ymd(d.year() as u16, d.month() as u8, d.day() as u8)?;
                            sheet.write_datetime_with_format(row + i as u32, c, &d, &date)?;
                        }
                    }
                    DataType::Boolean => {
                        let values = column.as_boolean();
                        for i in 0..values.len() {
                            if values.is_valid(i) {
                                sheet.write_boolean(row + i as u32, c, values.value(i))?;
                            }
                        }
                    }
                    _ => {
                        let values = arrow::compute::cast(column, &DataType::Utf8)?;
                        let values = values.as_string::<i32>();
                        for i in 0..values.len() {
                            if values.is_valid(i) {
                                sheet.write_string(row + i as u32, c, values.value(i))?;
                            }
                        }
                    }
                }
            }
            row += b.num_rows() as u32;
        }
    }
    Ok(book.save_to_buffer()?)
}
