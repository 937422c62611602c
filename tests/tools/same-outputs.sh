#!/usr/bin/env bash
# Runs two msgcapi binaries on the same inputs and shows any difference in what users see:
# reports, payload files, summaries (minus timings, run ids and memory), exit codes.
#
#   tests/tools/same-outputs.sh OLD_BINARY NEW_BINARY
#
# For a change that must not change behaviour (a refactoring): build the old commit's binary
# (`git worktree add /tmp/old COMMIT && cargo build --release --manifest-path /tmp/old/Cargo.toml`),
# then compare it with this tree's `target/release/msgcapi`. Inputs: every sample, and a generated
# 100k-row export like the bench's. Sends go to each binary's own emulator with one request in
# flight and a fixed seed, so trace ids and batch numbers are deterministic.
set -euo pipefail
old=$(realpath "$1")
new=$(realpath "$2")
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
now=2026-11-20T12:00:00Z

# The bench's mixed export: ~2 % duplicates, ~3 % bad amounts, hashed contact fields.
python3 - "$work/big.csv" 100000 <<'PY'
import sys, datetime
path, rows = sys.argv[1], int(sys.argv[2])
now = 1795176000
rng = 0x9E3779B97F4A7C15
M = (1 << 64) - 1
def nxt():
    global rng
    rng ^= (rng << 13) & M; rng ^= rng >> 7; rng ^= (rng << 17) & M
    return rng
with open(path, "w") as w:
    w.write("chan,stage,occurred_at,conv_id,dataset,waba_id,click_id,page_id,psid,ig_account,igsid,email,phone,amount,currency,order_ref\n")
    for i in range(rows):
        r = nxt()
        ident = (r >> 8) % i if (r % 50 == 0 and i > 0) else i
        t = now - 3600 - ((ident * 7919) % (5 * 86400))
        ts = datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        stage = ["paid", "lead", "cart", "shipped"][ident % 4]
        amount = "n/a" if r % 33 == 0 else f"{ident % 500}.{ident % 100:02}"
        if ident % 3 == 0:
            w.write(f"WA,{stage},{ts},wa-{ident},1234567890,102290129340398,ARAkLkA8rmlFeiCk-{ident},,,,,user{ident}@example.com,+55 11 9{ident % 100000000:08},{amount},BRL,ORD-{ident}\n")
        elif ident % 3 == 1:
            w.write(f"FB,{stage},{ts},fb-{ident},1234567891,,,109876543210987,67890{ident:010},,,,,{amount},USD,ORD-{ident}\n")
        else:
            w.write(f"IG,{stage},{ts},ig-{ident},1234567892,,,,,17841400123456789,555{ident:010},,,{amount},EUR,\n")
PY

cases=(
  "mixed.yaml samples/mixed.csv"
  "mixed.yaml samples/mixed.parquet"
  "whatsapp.yaml samples/whatsapp.csv"
  "whatsapp.yaml samples/whatsapp.parquet"
  "messenger.yaml samples/messenger.csv"
  "messenger.yaml samples/messenger.parquet"
  "instagram.yaml samples/instagram.tsv"
  "instagram.yaml samples/instagram.parquet"
  "mixed.yaml samples/malformed.csv"
  "mixed.yaml samples/truncated.parquet"
  "mixed.yaml BIG"
)

# Timings, run ids and memory differ between any two runs; everything else must not.
scrub() {
  sed -E -e 's/"(duration_secs|rows_per_sec|peak_rss_bytes)": [0-9.e+-]+/"\1": X/' \
         -e 's/"run_id": "[^"]*"/"run_id": X/' \
         -e 's/in [0-9.]+s( \([0-9]+ rows\/s\))?/in Xs/' "$@"
}

run_one() { # bin outdir mode mapping input
  local bin=$1 out=$2 mode=$3 mapping=$4 input=$5
  mkdir -p "$out"
  cd "$out"
  # Relative output paths, so messages that name them are the same for both binaries.
  local args=(--mapping "$root/mappings/$mapping" --now "$now" --report report.csv
              --summary-json summary.json)
  case $mode in
    validate) "$bin" validate "${args[@]}" "$input" 2>"$out/stderr" || echo "exit $?" >"$out/exit" ;;
    payloads) "$bin" validate "${args[@]}" --emit-payloads payloads "$input" 2>"$out/stderr" \
                || echo "exit $?" >"$out/exit" ;;
    jsonl)    "$bin" validate "${args[@]}" --report-format jsonl "$input" 2>"$out/stderr" \
                || echo "exit $?" >"$out/exit" ;;
    send)
      local url
      coproc EMU { MSGCAPI_EMULATOR_TOKEN=t exec "$bin" emulator --listen 127.0.0.1:0 --now "$now" --seed 7 --record "$out/received.jsonl"; }
      read -r url <&"${EMU[0]}"
      MSGCAPI_ACCESS_TOKEN=t "$bin" send "${args[@]}" --endpoint "$url" --concurrency 1 "$input" \
        2>"$out/stderr" || echo "exit $?" >"$out/exit"
      kill "$EMU_PID"; wait "$EMU_PID" 2>/dev/null || true
      ;;
  esac
  [ -f "$out/summary.json" ] && scrub -i "$out/summary.json"
  scrub -i "$out/stderr"
  cd "$root"
}

for c in "${cases[@]}"; do
  read -r mapping input <<<"$c"
  [ "$input" = BIG ] && input="$work/big.csv" || input="$root/$input"
  for mode in validate payloads jsonl send; do
    name="$(basename "$input")-$mode"
    run_one "$old" "$work/old/$name" "$mode" "$mapping" "$input"
    run_one "$new" "$work/new/$name" "$mode" "$mapping" "$input"
  done
done

if diff -r "$work/old" "$work/new"; then
  echo "same outputs: $(find "$work/old" -type f | wc -l) files compared"
else
  echo "outputs differ" >&2
  exit 1
fi
