//! PostgreSQL error codes for what goes wrong in a query. datafusion-postgres
//! reports every DataFusion error as an internal error (SQLSTATE XX000); BI
//! tools and drivers act on the code (a syntax error, an unknown table, a
//! cancelled statement), so errors are classified here before they are sent.
//! Only the code changes: the message stays DataFusion's.

use super::limits::Stopped;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use datafusion_postgres::pgwire::api::{ClientInfo, ErrorHandler};
use datafusion_postgres::pgwire::error::{ErrorInfo, PgWireError};
use std::error::Error;

/// Rewrites internal errors into PostgreSQL errors with a fitting SQLSTATE.
pub struct ErrorCodes;

impl ErrorHandler for ErrorCodes {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        match error {
            PgWireError::ApiError(e) => {
                let code = sqlstate(e.as_ref());
                let message = match stopped(e.as_ref()) {
                    Some(why) => why.to_string(),
                    None => e.to_string(),
                };
                *error = PgWireError::UserError(Box::new(ErrorInfo::new("ERROR".into(), code.into(), message)));
            }
            // SCRAM names the user of its own message, which libpq leaves empty.
            PgWireError::InvalidPassword(user) if user.is_empty() => {
                *user = client.metadata().get("user").cloned().unwrap_or_default();
            }
            _ => {}
        }
        let info: &dyn std::fmt::Display = error;
        tracing::debug!(peer = %client.socket_addr(), error = %info, "query failed");
    }
}

/// The limit that stopped a query, if one did.
pub(super) fn stopped<'a>(error: &'a (dyn Error + 'static)) -> Option<&'a Stopped> {
    let mut cause: Option<&(dyn Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if let Some(stopped) = e.downcast_ref::<Stopped>() {
            return Some(stopped);
        }
        cause = e.source();
    }
    None
}

/// The SQLSTATE of an error from planning or running a query.
pub fn sqlstate(error: &(dyn Error + 'static)) -> &'static str {
    if let Some(stopped) = stopped(error) {
        return stopped.sqlstate();
    }
    if error.downcast_ref::<ParserError>().is_some() {
        return "42601"; // syntax_error
    }
    let Some(df) = error.downcast_ref::<DataFusionError>() else {
        return "XX000";
    };
    match df.find_root() {
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(e, _) => {
            let text = e.to_string();
            if text.contains("No field named") || text.contains("not found") && text.contains("field") {
                "42703" // undefined_column
            } else {
                "42P01" // undefined_table
            }
        }
        DataFusionError::Plan(message) => {
            let m = message.to_ascii_lowercase();
            if m.contains("function") && (m.contains("invalid") || m.contains("not found") || m.contains("unknown")) {
                "42883" // undefined_function (table functions too)
            } else if m.contains("table") && m.contains("not found") {
                "42P01" // undefined_table
            } else if m.contains("not supported") {
                "25006" // read_only_sql_transaction: DDL, DML, COPY, statements
            } else {
                "42000" // syntax_error_or_access_rule_violation
            }
        }
        DataFusionError::NotImplemented(_) => "0A000", // feature_not_supported
        DataFusionError::ResourcesExhausted(_) => "53200", // out_of_memory
        DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => "22000", // data_exception
        _ => "XX000",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let plan = |m: &str| DataFusionError::Plan(m.to_string());
        assert_eq!(sqlstate(&plan("table 'datafusion.public.nope' not found")), "42P01");
        assert_eq!(sqlstate(&plan("Invalid function 'pg_read_file'.")), "42883");
        assert_eq!(sqlstate(&plan("table function 'read_csv' not found")), "42883");
        assert_eq!(sqlstate(&plan("DDL not supported: CreateMemoryTable")), "25006");
        let stopped = DataFusionError::External(Box::new(Stopped::TooManyRows(5)));
        assert_eq!(sqlstate(&stopped), "54000");
        let wrapped = DataFusionError::Context(
            "x".into(),
            Box::new(DataFusionError::External(Box::new(Stopped::Canceled))),
        );
        assert_eq!(sqlstate(&wrapped), "57014");
        assert_eq!(sqlstate(&ParserError::ParserError("x".into())), "42601");
    }
}
