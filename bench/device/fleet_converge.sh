#!/usr/bin/env bash
# ansible/site.yml run for real on the lent GPU machine (localhost inventory, connection local):
# install, second run (changed=0 expected), the agent scraped on 127.0.0.1:9847 with real NVML,
# `nodetune fleet` against a local Prometheus fed from the role's file_sd file (when the machine
# has prometheus), then nodetune_state: absent and what it left. Output: $OUT/fleet_converge.txt
# and the scrape in $OUT/metrics.txt.
#
# No internet there: everything comes from the carried .whl directory. Before the run, on the
# development machine:
#   python3 -m pip wheel --no-deps -w .whl .                       # the nodetune wheel
#   python3 -m pip download --no-deps -d .whl 'ansible-core==2.14.*' 'resolvelib<0.9'
# (ansible-core's other needs, jinja2, PyYAML, cryptography, packaging, come from the machine's
# python3; the script says so when they do not.) Real paths are used: /opt/nodetune,
# /etc/nodetune, /etc/systemd/system; the training-throughput profile is applied (no GPU power or
# clock changes: nodetune_allow_gpu_power stays false) and rolled back by the absent run.
source bench/device/setup.sh
set -u
W=$PWD/.whl
LOG=$OUT/fleet_converge.txt
{
echo "== facts"; uname -r; python3 --version; echo "PID 1: $(ps -p 1 -o comm=)"
# setup.sh's PYTHONPATH=/tmp/site would shadow the venv's nodetune in every command the role runs.
unset PYTHONPATH
if ! command -v ansible-playbook >/dev/null; then
  python3 -m venv --system-site-packages /tmp/ansible-venv
  /tmp/ansible-venv/bin/pip install -q --no-index --find-links "$W" ansible-core 2>&1 | tail -3
  export PATH=/tmp/ansible-venv/bin:$PATH
fi
ansible-playbook --version | head -1 || { echo "no ansible-playbook: carry ansible-core in .whl (see the header)"; exit 1; }
WHL=$(ls "$W"/nodetune-*.whl | head -1); echo "wheel: $WHL"
# systemd as PID 1: the units run the agent; otherwise the role's pidfile manager (nodetune-agentctl).
MGR=pidfile; [ "$(ps -p 1 -o comm=)" = systemd ] && MGR=systemd
echo "service manager: $MGR"
mkdir -p /tmp/fc && cd /tmp/fc
printf '[gpu_nodes]\nlocalhost ansible_connection=local ansible_python_interpreter=%s nodetune_scrape_address=127.0.0.1\n[prometheus]\nlocalhost\n' "$(command -v python3)" > inventory.ini
cat > vars.json <<EOF
{"ansible_become": $([ "$(id -u)" = 0 ] && echo false || echo true), "nodetune_package": "$WHL", "nodetune_python": "python3", "nodetune_venv_system_site_packages": true,
 "nodetune_pip_extra_args": "--no-index --find-links $W", "nodetune_install_os_packages": false,
 "nodetune_service_manager": "$MGR", "nodetune_agent_listen": "127.0.0.1:9847",
 "nodetune_prometheus_sd_file": "/tmp/fc/prom/file_sd/nodetune.json", "nodetune_prometheus_rules_dir": "/tmp/fc/prom/rules",
 "nodetune_prometheus_promtool": "$(command -v promtool || true)", "nodetune_prometheus_reload": false}
EOF
echo "[defaults]" > ansible.cfg
export ANSIBLE_CONFIG=/tmp/fc/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_PIPELINING=1 PIP_NO_INDEX=1
cd - >/dev/null
PLAY="ansible-playbook -i /tmp/fc/inventory.ini ansible/site.yml -e @/tmp/fc/vars.json"
echo "== run 1 (install, start, health check)"; t=$(date +%s); $PLAY > $OUT/run1.log 2>&1; echo "rc=$? $(( $(date +%s) - t ))s"
grep -A2 "PLAY RECAP" $OUT/run1.log; grep -E "fatal|agent on|GPU\(s\)" $OUT/run1.log | head -8
echo "== run 2 (expect changed=0)"; t=$(date +%s); $PLAY > $OUT/run2.log 2>&1; echo "rc=$? $(( $(date +%s) - t ))s"
grep -A2 "PLAY RECAP" $OUT/run2.log
echo "== --check --diff (expect changed=0)"; $PLAY --check --diff > $OUT/check.log 2>&1; echo "rc=$?"; grep -A2 "PLAY RECAP" $OUT/check.log
echo "== the agent after the rollout"
[ "$MGR" = systemd ] && systemctl --no-pager status nodetune.service | head -5
/opt/nodetune/bin/nodetune --version
sleep 16  # one diagnosis (diagnose_every_s 15) so verdict series exist
curl -s http://127.0.0.1:9847/metrics > $OUT/metrics.txt || python3 -c "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:9847/metrics').read().decode())" > $OUT/metrics.txt
wc -l < $OUT/metrics.txt
grep -E "^nodetune_(agent_last_sample_timestamp_seconds|gpu_utilization_ratio|gpu_verdict\{.*\} 1|gpu_pcie_link_width|gpu_state\{.*ok|tuning_changes_applied)" $OUT/metrics.txt | head -20
ss -ltnp 2>/dev/null | grep -E "9847|nodetune" || true
echo "== file_sd written from the inventory"; cat /tmp/fc/prom/file_sd/nodetune.json
if command -v prometheus >/dev/null; then
  echo "== nodetune fleet (the deployed CLI) against a local Prometheus (file_sd from the role)"
  sed -e "s|/etc/prometheus|/tmp/fc/prom|g" -e "s|scrape_interval: 15s|scrape_interval: 2s|" -e "s|scrape_timeout: 10s|scrape_timeout: 2s|" \
    monitoring/prometheus-fleet.yml > /tmp/fc/prometheus.yml
  prometheus --config.file=/tmp/fc/prometheus.yml --storage.tsdb.path=/tmp/fc/tsdb --web.listen-address=127.0.0.1:19090 >/tmp/fc/prom.log 2>&1 &
  PP=$!; sleep 40
  /opt/nodetune/bin/nodetune fleet --prometheus http://127.0.0.1:19090 --range 1m; echo "rc=$?"
  /opt/nodetune/bin/nodetune fleet --prometheus http://127.0.0.1:19090 --range 1m --json > $OUT/fleet.json; echo "rc=$?"
  kill $PP; wait $PP 2>/dev/null
else
  echo "== no prometheus on this machine: nodetune fleet not run here (tests/cli/test_fleet.py runs it in CI)"
fi
echo "== absent"; t=$(date +%s); $PLAY -e nodetune_state=absent > $OUT/absent.log 2>&1; echo "rc=$? $(( $(date +%s) - t ))s"
grep -A2 "PLAY RECAP" $OUT/absent.log
echo "left behind (expect none):"
ls -d /opt/nodetune /etc/nodetune /etc/default/nodetune /usr/local/bin/nodetune /etc/systemd/system/nodetune*.service \
  /var/lib/nodetune /run/nodetune 2>/dev/null || echo "  nothing"
pgrep -af "nodetune agent" || echo "no agent process"
} 2>&1 | tee $LOG
