#!/usr/bin/env bash
# v23 call 7: where the bench's M list starts to slow 4096 x 4096 and
# 14336 x 4096 at M = 1 (call 2: 5.15 us with --m 1,2,4, 5.39-5.44 with
# the table's eleven M; the bench sizes A and C for its largest M). M = 1
# with one other M of 4 .. 4096 rows, twice in alternation, bf16, main as
# of v23. Carry: `bash docs/results/h100-v23-build.sh` (new/).
variant_cmd() { echo "/tmp/bin/$1/int4mm"; }
source docs/results/h100-v23-lib.sh
mkdir -p $R/gap
for r in 1 2; do
  for big in 4 64 256 1024 4096; do
    timeout 60 /tmp/bin/new/int4mm bench --backend cuda --shapes 4096x4096,14336x4096 --m 1,$big --dtype bf16 \
      --json $R/gap/m$big-$r.json > $R/gap/m$big-$r.txt 2>&1
    echo "M=1,$big round $r exit $? ($SECONDS s): $(python3 -c "
import json
d = json.load(open('$R/gap/m$big-$r.json'))
print(' '.join('%dx%d %.2f' % (x['k'], x['n'], x['time_us']) for x in d['records']
               if x['m'] == 1 and x['kernel'] == 'gemv_mma'))")"
  done
done
pack
