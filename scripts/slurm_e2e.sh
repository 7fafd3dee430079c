#!/usr/bin/env bash
# End to end on a real scheduler: installs Slurm (Debian's slurm-wlm + munge), starts munged,
# slurmctld and slurmd for one node on this machine, submits deploy/slurm/embed.sbatch as a
# 4-task array over a 20,000-text input of three files, and checks the dataset against one
# unsharded run (same ids in the same order, no row missing or repeated, byte-identical
# vectors). Then kills one array task mid-run, re-submits that index and checks again.
# Needs root and ../shared/data; about 5 min on 2 cores. Writes bench-results/slurm.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
shared=${FROSTLINE_SHARED:-$here/../shared}
bash scripts/setup.sh >/dev/null
cargo build --release --quiet
bin=$here/target/release/frostline
model=$here/models/all-MiniLM-L6-v2

# --- Slurm on this machine -------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge >/dev/null
fi
node=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<EOF
ClusterName=frostline
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=main Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
stop() {
  pkill -x slurmd 2>/dev/null || true
  pkill -x slurmctld 2>/dev/null || true
  pkill -x munged 2>/dev/null || true
}
stop
sleep 1
trap stop EXIT
runuser -u munge -- /usr/sbin/munged
slurmctld
slurmd
for _ in $(seq 60); do
  sinfo -h -o %T 2>/dev/null | grep -qx idle && break
  sleep 1
done
sinfo

# --- 20,000 texts in three files, and the unsharded reference ------------------------------
work=$(mktemp -d /tmp/frostline-slurm-XXXX)
python3 - "$shared/data" "$work" <<'EOF'
import csv, sys
data, work = sys.argv[1], sys.argv[2]
texts = []
for name in ["banking77/train.csv", "sst2/train.csv", "goemotions_ekman/train.csv"]:
    with open(f"{data}/{name}", encoding="utf-8", newline="") as f:
        texts += [r["text"] for r in csv.DictReader(f)]
texts = texts[:20000]
assert len(texts) == 20000
for part, (lo, hi) in enumerate([(0, 7000), (7000, 13000), (13000, 20000)]):
    with open(f"{work}/corpus-{part}.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "text"])
        for i in range(lo, hi):
            w.writerow([f"t{i:05d}", texts[i]])
EOF
"$bin" embed --no-progress --model "$model" --input "$work/corpus-*.csv" --output "$work/reference.parquet" \
  --cache-dir "$work/cache-reference" --threads "$cpus"

# A checker that reads Parquet as any other tool would (pyarrow), in its own small venv.
venv=$HOME/.cache/frostline/check-venv
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -c 'import pyarrow, numpy' 2>/dev/null || "$venv/bin/pip" install -q pyarrow numpy
check() {
  "$venv/bin/python" - "$work/reference.parquet" "$1" <<'EOF'
import json, os, sys
import numpy as np, pyarrow.parquet as pq
ref, ds = sys.argv[1], sys.argv[2]
success = json.load(open(os.path.join(ds, "_SUCCESS")))
parts = [pq.read_table(os.path.join(ds, p["file"])) for p in success["parts"]]
ids = [i for t in parts for i in t.column("id").to_pylist()]
r = pq.read_table(ref)
want = r.column("id").to_pylist()
assert len(ids) == len(set(ids)) == 20000, (len(ids), len(set(ids)))
assert ids == want, "ids differ from the unsharded run"
vec = lambda t: np.stack([np.asarray(v, dtype=np.float32) for v in t.column("embedding").to_pylist()])
got = np.concatenate([vec(t) for t in parts])
assert got.tobytes() == vec(r).tobytes(), "vectors differ from the unsharded run"
rows = [p["rows"] for p in success["parts"]]
print(f"OK: {len(ids)} rows in {len(parts)} parts {rows}, same ids and order, byte-identical vectors")
EOF
}

submit() {  # submit OUTPUT CACHE [sbatch flags...]
  local out=$1 cache=$2
  shift 2
  sbatch --parsable --cpus-per-task=1 --mem=1G --output="$work/slurm-%A_%a.log" \
    --export=ALL,FROSTLINE="$bin",MODEL="$model",INPUT="$work/corpus-*.csv",OUTPUT="$out",CACHE="$cache",SHARDS=4 \
    "$@" deploy/slurm/embed.sbatch
}

report=bench-results/slurm.md
{
  echo "# Slurm end to end: deploy/slurm/embed.sbatch as a 4-task array ($(sinfo -V), one node, $cpus CPUs)"
  echo
  echo "Input: 20,000 texts (Banking77, SST-2, GoEmotions-Ekman train) in 3 CSV files; reference: one unsharded \`frostline embed\`."
  echo
} > "$report"

# 1. The whole array.
t0=$(date +%s)
submit "$work/ds/" "$work/cache-1" --array=0-3 --wait >/dev/null
t1=$(date +%s)
echo "## 1. sbatch --array=0-3 --wait: $((t1 - t0)) s" >> "$report"
check "$work/ds" | tee -a "$report"

# 2. Kill task 2 mid-run, let the others finish, re-submit index 2.
job=$(submit "$work/ds2/" "$work/cache-2" --array=0-3)
for _ in $(seq 600); do
  state=$(squeue -h -j "${job}_2" -o %T 2>/dev/null || true)
  [ "$state" = RUNNING ] && break
  sleep 0.5
done
sleep "${KILL_AFTER:-25}"
scancel --signal=KILL "${job}_2"
while squeue -h -j "$job" 2>/dev/null | grep -q .; do sleep 1; done
{
  echo
  echo "## 2. Task 2 killed (SIGKILL) ${KILL_AFTER:-25} s into its run (chunks of 2,048 rows are flushed as they fill)"
  echo
  echo "- after the kill: parts present: $(cd "$work/ds2" && ls part-*.parquet | tr '\n' ' '); _SUCCESS present: $([ -e "$work/ds2/_SUCCESS" ] && echo yes || echo no)"
} >> "$report"
submit "$work/ds2/" "$work/cache-2" --array=2 --wait >/dev/null
resumed=$(ls -t "$work"/slurm-*_2.log | head -n 1)
{
  echo "- re-submitted index 2: $(grep -m1 -o 'rows [0-9]*  (unique texts [0-9]*, cache hits [0-9]*, embedded [0-9]*)' "$resumed")"
} >> "$report"
check "$work/ds2" | tee -a "$report"
echo >> "$report"
echo "Re-run: \`bash scripts/slurm_e2e.sh\` (as root)." >> "$report"
cat "$report"
rm -rf "$work"
