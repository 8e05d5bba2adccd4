//! What BI tools send when they introspect, made to plan: the catalog
//! functions datafusion-postgres lacks, and a rewrite of the catalog
//! queries DataFusion cannot plan as written.
//!
//! tenure's tables have no constraints, indexes, sequences or domains, so
//! `pg_constraint`, `pg_index` and friends are empty; the queries about them
//! only have to plan and return no rows:
//! - SQLAlchemy's PostgreSQL dialect (Superset) reads key and index columns
//!   with `unnest(pg_index.indkey)` and `generate_subscripts(...)`, set
//!   functions over `int2vector`s DataFusion cannot unnest: both become a
//!   typed NULL (the tables they read are empty, so no row changes);
//! - it reads `pg_class.reloptions` of indexes (there are none): NULL;
//! - it asks `pg_type_is_visible(oid)` for domains (there are none): true;
//! - psycopg 3 looks types up with `to_regtype(name)`: the type's oid, or
//!   NULL for the types tenure does not have (such as `hstore`);
//! - `LIKE ... ESCAPE '/'` (SQLAlchemy's schema listing) is rewritten to the
//!   backslash escape, the only one DataFusion's LIKE takes;
//! - `pg_get_serial_sequence(...)`: NULL (no serial columns);
//! - `current_database()` is `tenure`, the name clients connect with;
//! - `pg_get_indexdef(...)`, `pg_get_constraintdef(...)` and the like
//!   describe objects tenure never has: NULL; so are table sizes (psql's
//!   `\dt+`), unknown for tables in object storage;
//! - `pg_description` also describes each published table (a mart's SQL
//!   header, a sentence for the others), so `obj_description`, psql's
//!   `\dt+` and SQLAlchemy's `get_table_comment` show what a table holds;
//!   `obj_description` and `col_description` become subqueries over it;
//! - `'pg_class'::regclass` finds relations of `pg_catalog` too (Metabase
//!   and DBeaver join `pg_description` on `classoid = 'pg_class'::regclass`;
//!   datafusion-postgres looks such names up in the current schema only);
//! - `information_schema.columns` names types as PostgreSQL does
//!   (`numeric`, `text`, `date`, ...) and numbers columns from 1 (Grafana
//!   picks time and value columns by type name);
//! - `has_table_privilege` and its kin grant reading only (`SELECT`,
//!   `USAGE`), so Metabase offers no writes.

use datafusion::arrow::array::{Array, AsArray, Int64Array};
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::{create_udf, ColumnarValue, ScalarUDF, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{Expr, Function, ObjectName, Statement, VisitMut, VisitorMut};
use std::ops::ControlFlow;
use std::sync::Arc;

/// Register the functions BI tools' catalog queries call.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(pg_type_is_visible());
    ctx.register_udf(to_regtype());
    ctx.register_udf(current_database());
    // Definitions of objects tenure never has (indexes, constraints): NULL.
    for name in ["pg_get_indexdef", "pg_get_constraintdef", "pg_get_triggerdef", "pg_get_ruledef", "pg_get_serial_sequence"] {
        ctx.register_udf(ScalarUDF::new_from_impl(NoDefinition::new(name, DataType::Utf8)));
    }
    // Sizes (psql's `\dt+`): unknown, the tables live in object storage.
    for name in ["pg_table_size", "pg_total_relation_size", "pg_relation_size", "pg_indexes_size"] {
        ctx.register_udf(ScalarUDF::new_from_impl(NoDefinition::new(name, DataType::Int64)));
    }
    ctx.register_udf(ScalarUDF::new_from_impl(NoDefinition::new("pg_size_pretty", DataType::Utf8)));
    // Privileges: reading is all anyone may do.
    for name in [
        "has_table_privilege",
        "has_any_column_privilege",
        "has_column_privilege",
        "has_schema_privilege",
        "has_database_privilege",
    ] {
        ctx.register_udf(ScalarUDF::new_from_impl(Privilege::new(name)));
    }
}

/// `has_table_privilege([user,] object, privilege)` and its kin: true for
/// the privileges of a reader (`SELECT`, `USAGE`, `CONNECT`), false for
/// the others (`INSERT`, `UPDATE`, `DELETE`, `CREATE`, ...), as a client may
/// only read. Metabase asks this of every table to know what it may write.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Privilege {
    name: &'static str,
    signature: datafusion::logical_expr::Signature,
}

impl Privilege {
    fn new(name: &'static str) -> Privilege {
        Privilege {
            name,
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable),
        }
    }

    /// Whether a privilege text (possibly a list, `'SELECT, INSERT'`: any of
    /// them) is one a reader holds.
    fn granted(text: &str) -> bool {
        text.split(',').any(|p| {
            let p = p.trim().to_ascii_lowercase();
            let p = p.strip_suffix(" with grant option").unwrap_or(&p);
            matches!(p, "select" | "usage" | "connect")
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for Privilege {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(DataType::Boolean)
    }
    fn invoke_with_args(&self, args: datafusion::logical_expr::ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let Some(privilege) = args.args.last() else {
            return Ok(ColumnarValue::Scalar(ScalarValue::Boolean(None)));
        };
        Ok(match privilege {
            ColumnarValue::Scalar(v) => ColumnarValue::Scalar(ScalarValue::Boolean(
                v.try_as_str().flatten().map(Privilege::granted),
            )),
            ColumnarValue::Array(a) => {
                let text = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                let text = text.as_string::<i32>();
                let granted: datafusion::arrow::array::BooleanArray =
                    text.iter().map(|t| t.map(Privilege::granted)).collect();
                ColumnarValue::Array(Arc::new(granted))
            }
        })
    }
}

/// `pg_get_indexdef(...)` and the like, whatever their arguments: NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
struct NoDefinition {
    name: &'static str,
    returns: DataType,
    signature: datafusion::logical_expr::Signature,
}

impl NoDefinition {
    fn new(name: &'static str, returns: DataType) -> NoDefinition {
        NoDefinition {
            name,
            returns,
            signature: datafusion::logical_expr::Signature::variadic_any(Volatility::Stable),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for NoDefinition {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }
    fn return_type(&self, _: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(self.returns.clone())
    }
    fn invoke_with_args(&self, _: datafusion::logical_expr::ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from(&self.returns)?))
    }
}

/// What the published tables and their columns hold, for `pg_description`.
#[derive(Debug, Default)]
pub struct Comments {
    /// (table, comment)
    pub tables: Vec<(String, String)>,
    /// (table, column, comment)
    pub columns: Vec<(String, String, String)>,
}

/// The comments of the published tables, and the rewrite of statements
/// (see the module doc).
#[derive(Debug, Default)]
pub struct Compat {
    /// `pg_description` with a row per commented table, as SQL.
    descriptions: Option<String>,
}

impl Compat {
    /// With `comments` (table name, comment) in `pg_description`.
    pub fn with_comments(comments: &Comments) -> Compat {
        if comments.tables.is_empty() && comments.columns.is_empty() {
            return Compat::default();
        }
        let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
        let class = "CAST((SELECT min(k.oid) FROM pg_catalog.pg_class AS k WHERE k.relname = 'pg_class') AS INT)";
        let mut descriptions = "SELECT objoid, classoid, objsubid, description FROM pg_catalog.pg_description".to_string();
        if !comments.tables.is_empty() {
            let values: Vec<String> = comments.tables.iter().map(|(t, c)| format!("({}, {})", quote(t), quote(c))).collect();
            descriptions.push_str(&format!(
                " UNION ALL SELECT CAST(c.oid AS INT) AS objoid, {class} AS classoid, CAST(0 AS INT) AS objsubid, t.description \
                 FROM pg_catalog.pg_class AS c JOIN (VALUES {}) AS t(relname, description) ON c.relname = t.relname",
                values.join(", ")
            ));
        }
        if !comments.columns.is_empty() {
            let values: Vec<String> = comments
                .columns
                .iter()
                .map(|(t, col, c)| format!("({}, {}, {})", quote(t), quote(col), quote(c)))
                .collect();
            descriptions.push_str(&format!(
                " UNION ALL SELECT CAST(c.oid AS INT) AS objoid, {class} AS classoid, CAST(a.attnum AS INT) AS objsubid, t.description \
                 FROM pg_catalog.pg_class AS c JOIN pg_catalog.pg_attribute AS a ON a.attrelid = c.oid \
                 JOIN (VALUES {}) AS t(relname, attname, description) ON c.relname = t.relname AND a.attname = t.attname",
                values.join(", ")
            ));
        }
        Compat {
            descriptions: Some(descriptions),
        }
    }

    /// `statement` as DataFusion can plan it; other statements are unchanged.
    pub fn rewrite(&self, statement: &Statement) -> Statement {
        let mut statement = statement.clone();
        // Queries about constraints and indexes (there are none) read
        // `pg_description` as it is: the tables' rows never match there, and
        // their ordered aggregates over the union trip DataFusion's plan
        // checker.
        let text = statement.to_string().to_ascii_lowercase();
        let describe = self.descriptions.is_some() && !text.contains("pg_constraint") && !text.contains("pg_index");
        let _ = statement.visit(&mut NameDescriptions);
        let _ = statement.visit(&mut CatalogVectors { compat: self, describe });
        statement
    }

    /// The described objects as a subquery.
    fn descriptions(&self) -> String {
        self.descriptions
            .clone()
            .unwrap_or_else(|| "SELECT objoid, classoid, objsubid, description FROM pg_catalog.pg_description".into())
    }

    /// `obj_description(object)` or `col_description(table, column)` as a
    /// correlated scalar subquery over the descriptions.
    fn description_of(&self, object: &Expr, subid: &Expr) -> Option<Expr> {
        let sql = format!(
            "SELECT (SELECT max(d.description) FROM ({}) AS d WHERE d.objoid = {object} AND d.objsubid = {subid})",
            self.descriptions()
        );
        let mut parsed = parse_one(&sql)?;
        let Statement::Query(q) = &mut parsed else { return None };
        let datafusion::sql::sqlparser::ast::SetExpr::Select(select) = q.body.as_mut() else { return None };
        match select.projection.pop()? {
            datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e) => Some(e),
            _ => None,
        }
    }
}

fn parse_one(sql: &str) -> Option<Statement> {
    use datafusion::sql::sqlparser::{dialect::PostgreSqlDialect, parser::Parser};
    Parser::parse_sql(&PostgreSqlDialect {}, sql).ok()?.pop()
}

/// Names the unnamed `obj_description(...)` and `col_description(...)`
/// columns of a select list after their function, as PostgreSQL does
/// (`col_description`, then `col_description_2`, ...): they become
/// subqueries, which DataFusion would otherwise name alike.
struct NameDescriptions;

impl VisitorMut for NameDescriptions {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut datafusion::sql::sqlparser::ast::Query) -> ControlFlow<()> {
        use datafusion::sql::sqlparser::ast::{Ident, SelectItem, SetExpr};
        let SetExpr::Select(select) = query.body.as_mut() else { return ControlFlow::Continue(()) };
        let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
        for item in select.projection.iter_mut() {
            let SelectItem::UnnamedExpr(Expr::Function(f)) = item else { continue };
            let name = function_name(&f.name);
            if name != "obj_description" && name != "col_description" {
                continue;
            }
            let n = seen.entry(name.clone()).or_insert(0);
            *n += 1;
            let alias = if *n == 1 { name } else { format!("{name}_{n}") };
            *item = SelectItem::ExprWithAlias {
                expr: Expr::Function(f.clone()),
                alias: Ident::new(alias),
            };
        }
        ControlFlow::Continue(())
    }
}

struct CatalogVectors<'a> {
    compat: &'a Compat,
    /// Whether `pg_description` is read with the tables' descriptions.
    describe: bool,
}

/// Set functions whose argument is an `int2vector`/`oidvector` of the catalog.
const SET_FUNCTIONS: [&str; 3] = ["unnest", "generate_subscripts", "_pg_expandarray"];

/// Catalog columns of vector type.
const VECTOR_COLUMNS: [&str; 8] = ["indkey", "indclass", "indoption", "indcollation", "conkey", "confkey", "stxkeys", "partattrs"];

/// Catalog columns datafusion-postgres's `pg_class` lacks, read (qualified)
/// only of objects tenure never has: NULL.
const MISSING_COLUMNS: [&str; 1] = ["reloptions"];

/// The last part of a name, unquoted, in lower case.
fn function_name(name: &ObjectName) -> String {
    name.0
        .last()
        .map(|p| match p.as_ident() {
            Some(ident) => ident.value.to_ascii_lowercase(),
            None => p.to_string().to_ascii_lowercase(),
        })
        .unwrap_or_default()
}

/// The plain arguments of a call.
fn function_args(f: &Function) -> Vec<Expr> {
    use datafusion::sql::sqlparser::ast::{FunctionArg, FunctionArgExpr, FunctionArguments};
    let FunctionArguments::List(list) = &f.args else { return Vec::new() };
    list.args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn reads_vector(f: &Function) -> bool {
    let text = f.args.to_string().to_ascii_lowercase();
    VECTOR_COLUMNS.iter().any(|c| text.contains(c))
}

impl VisitorMut for CatalogVectors<'_> {
    type Break = ();

    fn post_visit_table_factor(&mut self, factor: &mut datafusion::sql::sqlparser::ast::TableFactor) -> ControlFlow<Self::Break> {
        use datafusion::sql::sqlparser::ast::{Ident, TableAlias, TableFactor};
        if let TableFactor::Table { name, alias, args: None, .. } = factor {
            let parts: Vec<String> = name
                .0
                .iter()
                .map(|p| p.as_ident().map(|i| i.value.clone()).unwrap_or_else(|| p.to_string()).to_ascii_lowercase())
                .collect();
            let columns = matches!(
                parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
                ["information_schema", "columns"] | [_, "information_schema", "columns"]
            );
            let settings = matches!(
                parts.iter().map(String::as_str).collect::<Vec<_>>().as_slice(),
                ["pg_settings"] | ["pg_catalog", "pg_settings"]
            );
            if columns || settings {
                let (name, sql) = if columns { ("columns", POSTGRES_COLUMNS.to_string()) } else { ("pg_settings", settings_sql()) };
                let alias = alias.clone().unwrap_or(TableAlias {
                    explicit: true,
                    name: Ident::new(name),
                    columns: Vec::new(),
                    at: None,
                });
                if let Some(Statement::Query(subquery)) = parse_one(&sql) {
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery,
                        alias: Some(alias),
                        sample: None,
                    };
                }
                return ControlFlow::Continue(());
            }
        }
        if !self.describe {
            return ControlFlow::Continue(());
        }
        if let TableFactor::Table { name, alias, args: None, .. } = factor {
            if function_name(name) == "pg_description" && name.0.len() <= 2 {
                let alias = alias.clone().unwrap_or(TableAlias {
                    explicit: true,
                    name: Ident::new("pg_description"),
                    columns: Vec::new(),
                    at: None,
                });
                if let Some(Statement::Query(subquery)) = parse_one(&self.compat.descriptions()) {
                    *factor = TableFactor::Derived {
                        lateral: false,
                        subquery,
                        alias: Some(alias),
                        sample: None,
                    };
                }
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<Self::Break> {
        if let Some((schema, relation)) = regclass_lookup(expr) {
            // datafusion-postgres looks `'name'::regclass` up in the current
            // schema only; PostgreSQL's search path has `pg_catalog` first,
            // and Metabase and DBeaver compare `classoid` with
            // `'pg_class'::regclass` to find descriptions.
            let q = |s: &str| s.replace('\'', "''");
            let schemas = match &schema {
                Some(schema) => format!("'{}'", q(schema)),
                None => "'pg_catalog', current_schema()".into(),
            };
            let sql = format!(
                "SELECT (SELECT min(k.oid) FROM pg_catalog.pg_class AS k JOIN pg_catalog.pg_namespace AS ns \
                 ON k.relnamespace = ns.oid WHERE k.relname = '{}' AND ns.nspname IN ({schemas}))",
                q(&relation)
            );
            if let Some(Statement::Query(query)) = parse_one(&sql) {
                if let datafusion::sql::sqlparser::ast::SetExpr::Select(mut select) = *query.body {
                    if let Some(datafusion::sql::sqlparser::ast::SelectItem::UnnamedExpr(e)) = select.projection.pop() {
                        *expr = e;
                    }
                }
            }
            return ControlFlow::Continue(());
        }
        if let Expr::Like { pattern, escape_char, .. } | Expr::ILike { pattern, escape_char, .. } = expr {
            backslash_escape(pattern, escape_char);
        }
        if let Expr::CompoundFieldAccess { root, access_chain } = expr {
            // pgjdbc's key and index columns: `(_pg_expandarray(indkey)).n`
            // (the function already a NULL here) and `(keys).x` over it.
            let field = match access_chain.as_slice() {
                [datafusion::sql::sqlparser::ast::AccessExpr::Dot(Expr::Identifier(i))] => i.value.to_ascii_lowercase(),
                _ => String::new(),
            };
            let mut base = root.as_ref();
            while let Expr::Nested(e) = base {
                base = e;
            }
            let over_null = matches!(base, Expr::Cast { expr: e, .. } if matches!(e.as_ref(), Expr::Value(v) if v.value == datafusion::sql::sqlparser::ast::Value::Null));
            let over_keys = match base {
                Expr::Identifier(i) => i.value.eq_ignore_ascii_case("keys"),
                Expr::CompoundIdentifier(parts) => parts.last().is_some_and(|p| p.value.eq_ignore_ascii_case("keys")),
                _ => false,
            };
            if (field == "n" || field == "x") && (over_null || over_keys) {
                *expr = null_smallint();
                return ControlFlow::Continue(());
            }
            // An element of a key vector: `con.conkey[pos.n]` (root `con`,
            // then `.conkey`, then the subscript), and pgjdbc's
            // `tmp.I_INDOPTION[...]` (its alias of `indoption`).
            use datafusion::sql::sqlparser::ast::AccessExpr;
            let named = |e: &Expr| match e {
                Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
                Expr::CompoundIdentifier(parts) => parts.last().map(|p| p.value.to_ascii_lowercase()),
                _ => None,
            };
            let vector = match access_chain.as_slice() {
                [AccessExpr::Subscript(_)] => named(base),
                [.., AccessExpr::Dot(e), AccessExpr::Subscript(_)] => named(e),
                _ => None,
            }
            .is_some_and(|c| VECTOR_COLUMNS.contains(&c.as_str()) || c == "i_indoption");
            if vector {
                *expr = null_smallint();
                return ControlFlow::Continue(());
            }
        }
        if let Expr::CompoundIdentifier(parts) = expr {
            // `pg_catalog.pg_description.x` names the derived table's column.
            if self.describe
                && parts.len() == 3
                && parts[0].value.eq_ignore_ascii_case("pg_catalog")
                && parts[1].value.eq_ignore_ascii_case("pg_description")
            {
                parts.remove(0);
            }
            let column = parts.last().map(|p| p.value.to_ascii_lowercase()).unwrap_or_default();
            if MISSING_COLUMNS.contains(&column.as_str()) {
                *expr = Expr::Value(datafusion::sql::sqlparser::ast::Value::Null.into());
                return ControlFlow::Continue(());
            }
        }
        if let Expr::Function(f) = expr {
            let name = function_name(&f.name);
            if name == "obj_description" || name == "col_description" {
                let args = function_args(f);
                let zero = Expr::Value(datafusion::sql::sqlparser::ast::Value::Number("0".into(), false).into());
                let described = match (name.as_str(), args.as_slice()) {
                    ("obj_description", [object, ..]) => self.compat.description_of(object, &zero),
                    ("col_description", [table, column]) => self.compat.description_of(table, column),
                    _ => None,
                };
                if let Some(e) = described {
                    *expr = e;
                }
                return ControlFlow::Continue(());
            }
        }
        if let Expr::Function(f) = expr {
            if SET_FUNCTIONS.contains(&function_name(&f.name).as_str()) && reads_vector(f) {
                *expr = null_smallint();
            }
        }
        ControlFlow::Continue(())
    }
}

/// `information_schema.columns` as PostgreSQL has it: types by their
/// PostgreSQL names (`numeric`, `text`, `timestamp with time zone`), not
/// Arrow's, and positions from 1. Grafana's query builder picks time and
/// value columns by these names.
const POSTGRES_COLUMNS: &str = "SELECT table_catalog, table_schema, table_name, column_name, \
     CAST(ordinal_position + 1 AS BIGINT) AS ordinal_position, column_default, is_nullable, \
     CASE \
       WHEN data_type IN ('Utf8', 'Utf8View', 'LargeUtf8') THEN 'text' \
       WHEN data_type LIKE 'Decimal%' THEN 'numeric' \
       WHEN data_type IN ('Int64', 'UInt32') THEN 'bigint' \
       WHEN data_type IN ('Int32', 'UInt16') THEN 'integer' \
       WHEN data_type IN ('Int16', 'Int8', 'UInt8') THEN 'smallint' \
       WHEN data_type = 'Float64' THEN 'double precision' \
       WHEN data_type IN ('Float32', 'Float16') THEN 'real' \
       WHEN data_type = 'Boolean' THEN 'boolean' \
       WHEN data_type IN ('Date32', 'Date64') THEN 'date' \
       WHEN data_type LIKE 'Timestamp(%,%' THEN 'timestamp with time zone' \
       WHEN data_type LIKE 'Timestamp(%' THEN 'timestamp without time zone' \
       WHEN data_type IN ('Binary', 'BinaryView', 'LargeBinary') THEN 'bytea' \
       ELSE data_type END AS data_type, \
     character_maximum_length, character_octet_length, numeric_precision, numeric_precision_radix, \
     numeric_scale, datetime_precision, interval_type \
     FROM information_schema.columns";

/// Settings drivers read from `pg_settings` beyond datafusion-postgres's
/// own: pgjdbc's `DatabaseMetaData` asks `max_index_keys` before it lists
/// keys, and a client may check that the server is read-only.
const SETTINGS: [(&str, &str); 8] = [
    ("max_index_keys", "32"),
    ("max_identifier_length", "63"),
    ("server_encoding", "UTF8"),
    ("client_encoding", "UTF8"),
    ("integer_datetimes", "on"),
    ("transaction_read_only", "on"),
    ("default_transaction_read_only", "on"),
    ("server_version", super::SERVER_VERSION),
];

/// `pg_settings` with [`SETTINGS`] added.
fn settings_sql() -> String {
    let names: Vec<String> = SETTINGS.iter().map(|(n, _)| format!("'{n}'")).collect();
    let values: Vec<String> = SETTINGS.iter().map(|(n, v)| format!("('{n}', '{v}')")).collect();
    format!(
        "SELECT * FROM pg_catalog.pg_settings WHERE name NOT IN ({}) \
         UNION ALL SELECT s.name, s.setting, NULL AS unit, NULL AS category, NULL AS short_desc, NULL AS extra_desc, \
         'internal' AS context, 'string' AS vartype, 'default' AS source, NULL AS min_val, NULL AS max_val, \
         NULL AS enumvals, NULL AS bool_val, s.setting AS reset_val, NULL AS sourcefile, NULL AS sourceline, \
         false AS pending_restart FROM (VALUES {}) AS s(name, setting)",
        names.join(", "),
        values.join(", ")
    )
}

/// `CAST(NULL AS SMALLINT)`: a key column of an index or constraint tenure
/// never has.
fn null_smallint() -> Expr {
    Expr::Cast {
        kind: datafusion::sql::sqlparser::ast::CastKind::Cast,
        expr: Box::new(Expr::Value(datafusion::sql::sqlparser::ast::Value::Null.into())),
        data_type: datafusion::sql::sqlparser::ast::DataType::SmallInt(None),
        array: false,
        format: None,
    }
}

/// The start of datafusion-postgres's rewrite of `'name'::regclass`
/// (datafusion-pg-catalog 0.19), up to the name.
const REGCLASS_LOOKUP: &str = "SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid CROSS JOIN (SELECT parse_ident('";

/// The schema (if named) and relation of a `'name'::regclass` that
/// datafusion-postgres rewrote into its lookup subquery.
fn regclass_lookup(expr: &Expr) -> Option<(Option<String>, String)> {
    let Expr::Subquery(query) = expr else { return None };
    let text = query.to_string();
    let rest = text.strip_prefix(REGCLASS_LOOKUP)?;
    let name = &rest[..rest.find("'::TEXT)")?];
    if name.contains('\'') || name.contains('"') {
        return None; // quoted or odd names: left to the lookup as it is
    }
    let mut parts = name.split('.').map(str::to_string);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(relation), None, None) => Some((None, relation)),
        (Some(schema), Some(relation), None) => Some((Some(schema), relation)),
        _ => None,
    }
}

/// `LIKE 'pattern' ESCAPE 'c'` (SQLAlchemy's schema listing uses `ESCAPE
/// '/'`) as the same pattern escaped with a backslash, the only escape
/// DataFusion's LIKE knows. A pattern that is not a literal stays as it is.
fn backslash_escape(pattern: &mut Box<Expr>, escape_char: &mut Option<datafusion::sql::sqlparser::ast::ValueWithSpan>) {
    use datafusion::sql::sqlparser::ast::Value;
    let Some(escape) = escape_char.as_ref() else { return };
    let Value::SingleQuotedString(e) = &escape.value else { return };
    let mut chars = e.chars();
    let (Some(esc), None) = (chars.next(), chars.next()) else { return };
    if esc == '\\' {
        *escape_char = None;
        return;
    }
    let Expr::Value(v) = pattern.as_mut() else { return };
    let Value::SingleQuotedString(text) = &v.value else { return };
    v.value = Value::SingleQuotedString(with_backslashes(text, esc));
    *escape_char = None;
}

/// `pattern` (escaped with `esc`) escaped with a backslash instead.
fn with_backslashes(pattern: &str, esc: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == esc {
            if let Some(next) = chars.next() {
                out.push('\\');
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

/// `current_database()`: the database clients connect to is `tenure`.
fn current_database() -> ScalarUDF {
    create_udf(
        "current_database",
        vec![],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(|_| Ok(ColumnarValue::Scalar(ScalarValue::Utf8(Some("tenure".into()))))),
    )
}

/// `pg_type_is_visible(oid)`: every type tenure has is in `pg_catalog`,
/// on every search path.
fn pg_type_is_visible() -> ScalarUDF {
    create_udf(
        "pg_type_is_visible",
        vec![DataType::Int64],
        DataType::Boolean,
        Volatility::Stable,
        Arc::new(|args| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(v) => ColumnarValue::Scalar(ScalarValue::Boolean((!v.is_null()).then_some(true))),
                ColumnarValue::Array(a) => {
                    let out: datafusion::arrow::array::BooleanArray = (0..a.len()).map(|i| a.is_valid(i).then_some(true)).collect();
                    ColumnarValue::Array(Arc::new(out))
                }
            })
        }),
    )
}

/// The oids of the built-in types a name may resolve to (those tenure's
/// tables use, and their common aliases).
fn type_oid(name: &str) -> Option<i64> {
    let name = name.trim().trim_matches('"').to_ascii_lowercase();
    let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
    Some(match name {
        "bool" | "boolean" => 16,
        "bytea" => 17,
        "int8" | "bigint" => 20,
        "int2" | "smallint" => 21,
        "int4" | "integer" | "int" => 23,
        "text" => 25,
        "oid" => 26,
        "json" => 114,
        "float4" | "real" => 700,
        "float8" | "double precision" => 701,
        "varchar" | "character varying" => 1043,
        "date" => 1082,
        "timestamp" | "timestamp without time zone" => 1114,
        "timestamptz" | "timestamp with time zone" => 1184,
        "numeric" | "decimal" => 1700,
        "jsonb" => 3802,
        _ => return None,
    })
}

/// `to_regtype(name)`: the oid of a built-in type, NULL for any other.
fn to_regtype() -> ScalarUDF {
    create_udf(
        "to_regtype",
        vec![DataType::Utf8],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(|args| {
            Ok(match &args[0] {
                ColumnarValue::Scalar(ScalarValue::Utf8(v)) => ColumnarValue::Scalar(ScalarValue::Int64(v.as_deref().and_then(type_oid))),
                ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::Int64(None)),
                ColumnarValue::Array(a) => {
                    let a = datafusion::arrow::compute::cast(a, &DataType::Utf8)?;
                    let a = a.as_string::<i32>();
                    let out: Int64Array = (0..a.len()).map(|i| if a.is_valid(i) { type_oid(a.value(i)) } else { None }).collect();
                    ColumnarValue::Array(Arc::new(out))
                }
            })
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    fn rewritten(sql: &str) -> String {
        let statement = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect("parses").remove(0);
        Compat::default().rewrite(&statement).to_string()
    }

    #[test]
    fn key_vectors_of_pgjdbc_become_null() {
        let out = rewritten("SELECT pos.n FROM pg_catalog.pg_constraint con, generate_series(1, 32) pos(n) WHERE pka.attnum = con.confkey[pos.n]");
        assert!(out.contains("pka.attnum = CAST(NULL AS SMALLINT)"), "{out}");
        let out = rewritten("SELECT (information_schema._pg_expandarray(i.indkey)).n AS k FROM (SELECT 1) result WHERE result.a = (result.KEYS).x");
        assert!(out.contains("CAST(NULL AS SMALLINT) AS k") && out.contains("result.a = CAST(NULL AS SMALLINT)"), "{out}");
    }

    #[test]
    fn readers_hold_select_and_usage_only() {
        for (text, granted) in [
            ("SELECT", true),
            ("usage", true),
            ("select with grant option", true),
            ("INSERT, SELECT", true),
            ("insert", false),
            ("UPDATE", false),
            ("delete, truncate", false),
            ("create", false),
        ] {
            assert_eq!(Privilege::granted(text), granted, "{text}");
        }
    }

    #[test]
    fn a_regclass_lookup_searches_pg_catalog_and_names_a_schema() {
        let lookup = |name: &str| {
            format!(
                "SELECT 1 WHERE classoid = ({REGCLASS_LOOKUP}{name}'::TEXT) AS parts) WHERE array_length(parts, 1) IN (1, 2))"
            )
        };
        let out = rewritten(&lookup("pg_class"));
        assert!(out.contains("k.relname = 'pg_class' AND ns.nspname IN ('pg_catalog', current_schema())"), "{out}");
        let out = rewritten(&lookup("public.mrr_monthly"));
        assert!(out.contains("k.relname = 'mrr_monthly' AND ns.nspname IN ('public')"), "{out}");
        // Columns of information_schema get PostgreSQL's type names.
        let out = rewritten("select data_type from information_schema.columns where table_name = 'x'");
        assert!(out.contains("'numeric'") && out.contains("AS columns"), "{out}");
    }

    #[test]
    fn set_functions_over_catalog_vectors_become_null() {
        let sql = "SELECT unnest(pg_catalog.pg_index.indkey) AS attnum, generate_subscripts(pg_catalog.pg_index.indkey, 1) AS ord FROM pg_catalog.pg_index";
        assert_eq!(rewritten(sql), "SELECT CAST(NULL AS SMALLINT) AS attnum, CAST(NULL AS SMALLINT) AS ord FROM pg_catalog.pg_index");
        // Any other unnest is the client's own.
        let own = "SELECT unnest(ARRAY[1, 2]) AS x";
        assert_eq!(rewritten(own), own);
    }

    #[test]
    fn like_escapes_become_backslashes() {
        assert_eq!(
            rewritten("SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg/_%' ESCAPE '/'"),
            "SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg\\_%'"
        );
        assert_eq!(with_backslashes("a//b/%c\\d", '/'), "a\\/b\\%c\\\\d");
        let plain = "SELECT 1 WHERE 'a' LIKE 'a%'";
        assert_eq!(rewritten(plain), plain);
    }

    #[test]
    fn type_names_resolve_to_their_oids() {
        assert_eq!(type_oid("numeric"), Some(1700));
        assert_eq!(type_oid("pg_catalog.int8"), Some(20));
        assert_eq!(type_oid("hstore"), None);
    }
}
