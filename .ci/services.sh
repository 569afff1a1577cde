# Make sure the servers the tests use answer; start (or install and start) them when nothing does.
# Sourced by .ci/run. Tests that need a server skip cleanly when it is still absent.
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! answers 5432; then
  echo "ci: starting PostgreSQL"
  if ! command -v pg_ctlcluster >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || true
  fi
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    for _ in $(seq 1 30); do answers 5432 && break; sleep 1; done
    su postgres -c "psql -qc \"ALTER USER postgres WITH PASSWORD NULL\"" >/dev/null 2>&1 || true
    su postgres -c "createdb test" >/dev/null 2>&1 || true
  fi
fi
answers 5432 && export OPENLFR_TEST_PG=${OPENLFR_TEST_PG:-postgresql+psycopg://postgres@127.0.0.1:5432/test} || true
