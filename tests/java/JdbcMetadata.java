// pgjdbc's DatabaseMetaData against `tenure serve`, as DBeaver, DataGrip and
// Metabase use it to browse a database, for tests/it/serve.rs. Run as a
// single source file (java -cp postgresql.jar JdbcMetadata.java PORT PASSWORD);
// prints one "key<TAB>value" line per answer. Nothing is computed here: the
// test holds the expected values.

import java.math.BigDecimal;
import java.sql.*;
import java.util.*;

public class JdbcMetadata {
    static void print(String key, Object value) {
        System.out.println(key + "\t" + value);
    }

    static List<String> column(ResultSet rs, String... names) throws SQLException {
        List<String> out = new ArrayList<>();
        while (rs.next()) {
            StringJoiner row = new StringJoiner("|");
            for (String n : names) row.add(String.valueOf(rs.getObject(n)));
            out.add(row.toString());
        }
        rs.close();
        return out;
    }

    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0] + "/tenure";
        Properties props = new Properties();
        props.setProperty("user", "tenure");
        props.setProperty("password", args[1]);
        props.setProperty("connectTimeout", "10");
        try (Connection conn = DriverManager.getConnection(url, props)) {
            DatabaseMetaData md = conn.getMetaData();
            print("product", md.getDatabaseProductName() + " " + md.getDatabaseMajorVersion());
            print("catalog", conn.getCatalog());
            print("read_only", md.isReadOnly());
            print("catalogs", column(md.getCatalogs(), "TABLE_CAT"));
            print("schemas", column(md.getSchemas(), "TABLE_SCHEM"));
            print("tables", column(md.getTables(null, "public", "%", new String[] {"TABLE"}), "TABLE_NAME"));
            print("remarks", column(md.getTables(null, "public", "mrr_bridge_monthly", null), "REMARKS"));
            print("columns", column(md.getColumns(null, "public", "mrr_bridge_monthly", "%"), "COLUMN_NAME", "TYPE_NAME", "DATA_TYPE", "ORDINAL_POSITION"));
            print("primary_keys", column(md.getPrimaryKeys(null, "public", "mrr_bridge_monthly"), "COLUMN_NAME"));
            print("imported_keys", column(md.getImportedKeys(null, "public", "mrr_bridge_monthly"), "FKCOLUMN_NAME"));
            print("indexes", column(md.getIndexInfo(null, "public", "mrr_bridge_monthly", false, true), "INDEX_NAME"));
            try (PreparedStatement ps = conn.prepareStatement(
                    "select end_mrr, start_customers from mrr_bridge_monthly where segment = ? and month = ?")) {
                ps.setString(1, "all");
                ps.setObject(2, java.time.LocalDate.of(2026, 2, 1));
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    BigDecimal end = rs.getBigDecimal(1);
                    print("february", end.toPlainString() + "|" + rs.getLong(2) + "|" + rs.getMetaData().getColumnTypeName(1));
                }
            }
            try (Statement st = conn.createStatement()) {
                st.executeUpdate("create table t (a int)");
                print("ddl", "accepted");
            } catch (SQLException e) {
                print("ddl", e.getSQLState());
            }
        }
    }
}
