"""Real PostgreSQL clients against `tenure serve`, for tests/it/serve.rs.

    serve_client.py psycopg PORT PASSWORD   parameterised queries with psycopg 3
                                            (extended protocol), printed as JSON
    serve_client.py hold PORT PASSWORD N    N psycopg sessions opened one after another
                                            and kept open, each running a query;
                                            prints "ok" or the error of each
    serve_client.py sqlalchemy PORT PASSWORD DRIVER
                                            SQLAlchemy's PostgreSQL inspector and table
                                            reflection over DRIVER (psycopg2, or psycopg:
                                            version 3, the extended protocol), as
                                            Superset uses them; prints what each call
                                            returned
    serve_client.py adbc PORT PASSWORD      ADBC's Flight SQL driver against
                                            `--flight-listen`: a mart read into a
                                            pyarrow table, the catalog calls, a
                                            prepared statement with a parameter, and
                                            what a wrong password or DDL gets
    serve_client.py adbc-tls PORT PASSWORD ROOT_CERT
                                            the same driver over TLS (grpc+tls) with
                                            ROOT_CERT trusted, and a plain attempt
    serve_client.py scram PORT USER PASSWORD
                                            a SCRAM-SHA-256 login by hand, printing
                                            the SQLSTATE the server answers with
                                            (libpq shows no code for login errors)

Values are printed with their Python types so the Rust test can check that
decimals arrive as Decimal, dates as date, NULLs as None. Nothing is computed
here: the test holds the expected values.
"""

import base64
import datetime
import decimal
import hashlib
import hmac
import json
import os
import socket
import struct
import sys


def typed(value):
    """A JSON-friendly [type, text] pair."""
    if value is None:
        return ["None", None]
    return [type(value).__name__, str(value)]


def run_psycopg(port, password):
    import psycopg

    out = {}
    conn = psycopg.connect(host="127.0.0.1", port=port, user="tenure", password=password, dbname="tenure", connect_timeout=10)
    cur = conn.cursor()
    cur.execute(
        "select mrr, event_date, occurred_at, seats, plan from events where event_id = %s and customer_id = %s",
        ("e1", "c1"),
    )
    out["columns"] = [[d.name, d.type_code] for d in cur.description]
    out["event"] = [typed(v) for v in cur.fetchone()]
    cur.execute(
        "select month, mrr from mrr_monthly where customer_id = %s and month >= %s order by month",
        ("c2", datetime.date(2026, 2, 1)),
    )
    out["c2"] = [[typed(m), typed(v)] for m, v in cur.fetchall()]
    # A decimal parameter compared with a decimal column, prepared and re-run.
    for _ in range(3):
        cur.execute("select count(*) from mrr_monthly where mrr > %s", (decimal.Decimal("50.25"),), prepare=True)
    out["over_50_25"] = cur.fetchone()[0]
    cur.execute("select true as yes, cast(null as bigint) as nothing")
    out["literals"] = [typed(v) for v in cur.fetchone()]
    try:
        cur.execute("insert into events (event_id) values (%s)", ("x",))
        out["insert"] = "accepted"
    except psycopg.Error as e:
        out["insert"] = e.sqlstate
    conn.rollback()
    cur.execute("select count(*) from events")
    out["after_refusal"] = cur.fetchone()[0]
    try:
        named = conn.cursor(name="c")
        named.execute("select event_id from events")
        named.fetchall()
        out["named_cursor"] = "accepted"
    except psycopg.Error as e:
        out["named_cursor"] = e.sqlstate
    conn.rollback()
    conn.close()
    print(json.dumps(out))


def run_hold(port, password, n):
    import psycopg

    held, out = [], []
    for _ in range(n):
        try:
            conn = psycopg.connect(host="127.0.0.1", port=port, user="tenure", password=password, dbname="tenure", connect_timeout=10)
            conn.execute("select 1").fetchone()
            held.append(conn)
            out.append("ok")
        except psycopg.Error as e:
            out.append(str(e))
    for conn in held:
        conn.close()
    print(json.dumps(out))


def run_sqlalchemy(port, password, driver):
    from sqlalchemy import MetaData, Table, create_engine, inspect, text
    from urllib.parse import quote

    engine = create_engine(f"postgresql+{driver}://tenure:{quote(password)}@127.0.0.1:{port}/tenure")
    inspector = inspect(engine)
    out = {}
    out["schemas"] = inspector.get_schema_names()
    out["tables"] = inspector.get_table_names(schema="public")
    out["views"] = inspector.get_view_names(schema="public")
    out["columns"] = [
        [c["name"], str(c["type"]), c["nullable"]] for c in inspector.get_columns("mrr_bridge_monthly", schema="public")
    ]
    out["pk"] = inspector.get_pk_constraint("mrr_bridge_monthly", schema="public")["constrained_columns"]
    out["foreign_keys"] = inspector.get_foreign_keys("mrr_bridge_monthly", schema="public")
    out["indexes"] = inspector.get_indexes("mrr_bridge_monthly", schema="public")
    out["unique"] = inspector.get_unique_constraints("mrr_bridge_monthly", schema="public")
    out["comment"] = inspector.get_table_comment("mrr_bridge_monthly", schema="public")["text"]
    out["column_comments"] = {
        c["name"]: c.get("comment") for c in inspector.get_columns("mrr_bridge_monthly", schema="public")
    }
    out["has_table"] = inspector.has_table("mrr_monthly")
    table = Table("mrr_monthly", MetaData(), autoload_with=engine)
    out["reflected"] = [c.name for c in table.columns]
    with engine.connect() as conn:
        rows = conn.execute(table.select().where(table.c.customer_id == "c2").order_by(table.c.month)).fetchall()
        out["c2"] = [[typed(r.month), typed(r.mrr)] for r in rows]
        out["database"] = conn.execute(text("select current_database()")).scalar()
    print(json.dumps(out))


def run_adbc(port, password):
    import adbc_driver_flightsql.dbapi as flight_sql
    import adbc_driver_manager
    import pyarrow as pa

    uri = f"grpc://127.0.0.1:{port}"
    out = {}

    def connect(pw):
        # autocommit: tenure has no transactions to turn it off for.
        return flight_sql.connect(uri, db_kwargs={"username": "tenure", "password": pw}, autocommit=True)

    try:
        with connect(password + "x") as conn, conn.cursor() as cur:
            cur.execute("select 1")
            out["wrong_password"] = "accepted"
    except adbc_driver_manager.Error as e:
        out["wrong_password"] = type(e).__name__ + ": " + str(e)

    with connect(password) as conn:
        with conn.cursor() as cur:
            cur.execute(
                "select month, segment, start_mrr, end_mrr, ndr, start_customers from mrr_bridge_monthly order by month, segment"
            )
            table = cur.fetch_arrow_table()
            out["schema"] = [[f.name, str(f.type)] for f in table.schema]
            out["rows"] = [
                "|".join(str(r[k]) for k in ["month", "segment", "start_mrr", "end_mrr", "start_customers"])
                for r in table.to_pylist()
            ]

            # A prepared statement with a parameter, run twice with two values.
            counts = []
            for month in ["2026-01-01", "2026-02-01"]:
                cur.execute("select count(*) as n from mrr_monthly where month = cast($1 as date)", parameters=(month,))
                counts.append(cur.fetch_arrow_table().column("n")[0].as_py())
            out["counts"] = counts

            for name, sql in [("ddl", "create table t as select 1"), ("copy", "copy (select 1) to '/tmp/x.csv'"), ("unknown", "select * from nope")]:
                try:
                    cur.execute(sql)
                    cur.fetch_arrow_table()
                    out[name] = "accepted"
                except adbc_driver_manager.Error as e:
                    out[name] = type(e).__name__ + ": " + str(e)

        objects = conn.adbc_get_objects(depth="tables").read_all().to_pylist()
        out["catalogs"] = [o["catalog_name"] for o in objects]
        out["schemas"] = [s["db_schema_name"] for o in objects for s in o["catalog_db_schemas"]]
        out["tables"] = sorted(t["table_name"] for o in objects for s in o["catalog_db_schemas"] for t in s["db_schema_tables"])
        schema = conn.adbc_get_table_schema("finance_kpis_monthly", catalog_filter="tenure", db_schema_filter="public")
        out["finance_kpis_monthly"] = [[f.name, str(f.type)] for f in schema][:4]
        out["table_types"] = conn.adbc_get_table_types()
        info = conn.adbc_get_info()
        out["vendor"] = info.get("vendor_name")
    out["raw"] = raw_flight(port, password)
    print(json.dumps(out))


def protobuf_bytes(field, payload):
    """One length-delimited protobuf field."""
    n, length = len(payload), b""
    while True:
        byte, n = n & 0x7F, n >> 7
        length += bytes([byte | (0x80 if n else 0)])
        if not n:
            break
    return bytes([field << 3 | 2]) + length + payload


def flight_sql_any(message, body):
    return protobuf_bytes(1, b"type.googleapis.com/arrow.flight.protocol.sql." + message) + protobuf_bytes(2, body)


def raw_flight(port, password):
    """Calls no well-behaved driver makes: no token, an empty or forged one,
    and a hand-made ticket holding DDL; what each gets."""
    import pyarrow.flight as fl

    client = fl.FlightClient(f"grpc://127.0.0.1:{port}")
    query = fl.FlightDescriptor.for_command(flight_sql_any(b"CommandStatementQuery", protobuf_bytes(1, b"select 1 as one")))
    out = {}

    def attempt(name, headers, call):
        try:
            call(fl.FlightCallOptions(headers=headers))
            out[name] = "accepted"
        except fl.FlightError as e:
            out[name] = type(e).__name__

    attempt("no_token", [], lambda o: client.get_flight_info(query, o))
    attempt("empty_token", [(b"authorization", b"Bearer ")], lambda o: client.get_flight_info(query, o))
    attempt("forged_token", [(b"authorization", b"Bearer 0123456789abcdef")], lambda o: client.get_flight_info(query, o))
    token = client.authenticate_basic_token(b"tenure", password.encode())
    attempt("token", [token], lambda o: client.get_flight_info(query, o))
    ddl = fl.Ticket(flight_sql_any(b"TicketStatementQuery", protobuf_bytes(1, b"create table t as select 1")))
    attempt("ddl_ticket", [token], lambda o: client.do_get(ddl, o).read_all())
    return out


def run_adbc_tls(port, password, root_cert):
    import adbc_driver_flightsql
    import adbc_driver_flightsql.dbapi as flight_sql
    import adbc_driver_manager

    kwargs = {"username": "tenure", "password": password}
    out = {}
    with open(root_cert) as f:
        tls = {adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: f.read()}
    with flight_sql.connect(f"grpc+tls://localhost:{port}", db_kwargs={**kwargs, **tls}, autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.execute("select count(*) as n from events")
            out["count"] = cur.fetch_arrow_table().column("n")[0].as_py()
    try:
        with flight_sql.connect(f"grpc://localhost:{port}", db_kwargs=kwargs, autocommit=True) as conn:
            out["plain"] = "accepted"
    except adbc_driver_manager.Error as e:
        out["plain"] = type(e).__name__
    print(json.dumps(out))


def message(kind, body):
    return kind + struct.pack("!i", len(body) + 4) + body


def read_message(sock):
    head = b""
    while len(head) < 5:
        chunk = sock.recv(5 - len(head))
        if not chunk:
            raise EOFError("server closed the connection")
        head += chunk
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    body = b""
    while len(body) < length - 4:
        chunk = sock.recv(length - 4 - len(body))
        if not chunk:
            raise EOFError("server closed the connection")
        body += chunk
    return kind, body


def error_code(body):
    for field in body.split(b"\0"):
        if field.startswith(b"C"):
            return field[1:].decode()
    return None


def run_scram(port, user, password):
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    params = b"user\0" + user.encode() + b"\0database\0tenure\0\0"
    sock.sendall(struct.pack("!ii", len(params) + 8, 196608) + params)
    kind, body = read_message(sock)
    assert kind == b"R" and struct.unpack("!i", body[:4])[0] == 10, (kind, body)
    nonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=,r=" + nonce
    first = ("n,," + first_bare).encode()
    sock.sendall(message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
    kind, body = read_message(sock)
    if kind == b"E":
        print(json.dumps({"code": error_code(body)}))
        return
    server_first = body[4:].decode()
    fields = dict(item.split("=", 1) for item in server_first.split(","))
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    final_without_proof = "c=biws,r=" + fields["r"]
    auth_message = ",".join([first_bare, server_first, final_without_proof]).encode()
    signature = hmac.new(stored_key, auth_message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature))
    final = final_without_proof + ",p=" + base64.b64encode(proof).decode()
    sock.sendall(message(b"p", final.encode()))
    kind, body = read_message(sock)
    if kind == b"E":
        print(json.dumps({"code": error_code(body)}))
        return
    while kind != b"Z":
        kind, body = read_message(sock)
        if kind == b"E":
            print(json.dumps({"code": error_code(body)}))
            return
    print(json.dumps({"code": None, "ready": True}))


if __name__ == "__main__":
    if sys.argv[1] == "psycopg":
        run_psycopg(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "hold":
        run_hold(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    elif sys.argv[1] == "sqlalchemy":
        run_sqlalchemy(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "adbc":
        run_adbc(int(sys.argv[2]), sys.argv[3])
    elif sys.argv[1] == "adbc-tls":
        run_adbc_tls(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    elif sys.argv[1] == "scram":
        run_scram(int(sys.argv[2]), sys.argv[3], sys.argv[4])
    else:
        sys.exit("usage: serve_client.py psycopg|adbc PORT PASSWORD | sqlalchemy PORT PASSWORD DRIVER | hold PORT PASSWORD N | scram PORT USER PASSWORD")
