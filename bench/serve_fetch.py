"""Fetch the same query's rows from `tenure serve` over the PostgreSQL protocol
(psycopg 3, binary and text) and over Arrow Flight SQL (ADBC), and print the
time each takes.

    python3 bench/serve_fetch.py PG_PORT FLIGHT_PORT PASSWORD "SQL" [RUNS]

Start the server first, e.g.:

    TENURE_SERVER_PASSWORD=... target/release/tenure serve --warehouse W \\
        --listen 127.0.0.1:5433 --flight-listen 127.0.0.1:50051

Each client connects once, runs the query RUNS times (default 5) and keeps
every row in memory as its users would (a list of tuples, a pyarrow table);
the figures are min and median wall seconds over the runs. Needs psycopg 3,
adbc-driver-flightsql and pyarrow.
"""

import statistics
import sys
import time


def timed(runs, fetch):
    seconds, rows = [], 0
    for _ in range(runs):
        start = time.perf_counter()
        rows = fetch()
        seconds.append(time.perf_counter() - start)
    return rows, min(seconds), statistics.median(seconds)


def main():
    pg_port, flight_port, password, sql = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
    runs = int(sys.argv[5]) if len(sys.argv) > 5 else 5

    import adbc_driver_flightsql.dbapi as flight_sql
    import psycopg

    results = []
    with psycopg.connect(host="127.0.0.1", port=pg_port, user="tenure", password=password, dbname="tenure") as conn:
        for binary in (False, True):

            def fetch():
                with conn.cursor(binary=binary) as cur:
                    cur.execute(sql)
                    return len(cur.fetchall())

            name = "pgwire, psycopg 3 " + ("binary" if binary else "text")
            results.append((name, *timed(runs, fetch)))

    with flight_sql.connect(
        f"grpc://127.0.0.1:{flight_port}", db_kwargs={"username": "tenure", "password": password}, autocommit=True
    ) as conn:

        def fetch():
            with conn.cursor() as cur:
                cur.execute(sql)
                return cur.fetch_arrow_table().num_rows

        results.append(("Flight SQL, ADBC (pyarrow table)", *timed(runs, fetch)))

    print(f"query: {sql}")
    print(f"{'client':40} {'rows':>10} {'min s':>8} {'median s':>9} {'rows/s (median)':>16}")
    for name, rows, low, median in results:
        print(f"{name:40} {rows:>10} {low:>8.3f} {median:>9.3f} {rows / median:>16,.0f}")


if __name__ == "__main__":
    main()
