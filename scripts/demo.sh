#!/usr/bin/env bash
# `make demo`: a signer, a build client and a bastion in local podman containers. The signer
# and the client are deployed with playbooks/deploy-signer.yml; the release key comes from the
# key ceremony (docs/runbook.md): generated on the bastion (rotate-key.yml), attested by a lab
# root admin on this machine (attest-key.yml), installed on the signer by the switch-over
# (rotate-key.yml --tags switch-over, quorum 1). An RPM and a tarball are then signed remotely
# (the client never holds a private key) and verified on this machine with stock rpmkeys and
# gpg, the tarball against the ceremony's published public key.
# Second runs reuse the image, the containers and the keys (the ceremony is idempotent: no
# second key).   `make demo-clean` removes the lab.
# Usage: scripts/demo.sh            (scripts/demo.sh clean  == make demo-clean)
set -euo pipefail
# shellcheck source=/dev/null
. "$(dirname "$0")/collection-paths.sh"
cd "$COLLECTION_ROOT"

LAB_DIR="$COLLECTION_ROOT/lab"
NETWORK=pkgsign-lab
SUBNET=10.90.78.0/24          # keep in sync with inventories/lab/group_vars/signers.yml
IMAGE=localhost/debian12-systemd
CONTAINERS=(pkgsign-signer pkgsign-client pkgsign-bastion)
INVENTORY=inventories/lab/hosts.yml
CEREMONY_DIR="$LAB_DIR/ceremony"   # lab_ceremony_dir in inventories/lab/group_vars/all.yml
CYCLE=lab-1
ALIAS=release                      # lab_release_alias, the name the switch-over gives the key
STEPS=9
START=$(date +%s)

step() { printf '\n\033[1m[demo %s/%s] %s\033[0m  (%ss)\n' "$1" "$STEPS" "$2" "$(($(date +%s) - START))"; }
say() { printf '  %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
in_client() { podman exec pkgsign-client "$@"; }
random_secret() { python3 -c 'import secrets; print(secrets.token_urlsafe(24))'; }
admin_gpg() { LC_ALL=C gpg --batch --quiet --homedir "$ADMIN_HOME" "$@" 2>/dev/null; }

HEARTBEAT=20   # seconds without a new line before progress says what is still running
# The playbooks name the runbook's steps ("Step 5, switch-over: ..."); in the demo's output they
# become "switch-over: ... (runbook step 5)" so that only the demo's own steps are numbered.
runbook_name() {
    if [[ $1 =~ ^(.*: )?Steps?\ ([0-9][0-9-]*)[,:]\ *(.*)$ ]]; then
        printf '%s%s (runbook step %s)' "${BASH_REMATCH[1]}" "${BASH_REMATCH[3]}" "${BASH_REMATCH[2]}"
    else
        printf '%s' "$1"
    fi
}
# progress [ansible]: shows its input indented and, after HEARTBEAT seconds without a new line,
# what is still running. With "ansible" the input is ansible-playbook's output, of which only
# the plays, each task the first time it runs (skipped tasks and repeats are left out: the
# full output is in the log) and failures are shown.
progress() {
    local mode="${1:-plain}" line status task="" since=$SECONDS pending=0
    local -A shown=()
    while :; do
        status=0
        IFS= read -r -t "$HEARTBEAT" line || status=$?
        if [ "$status" -gt 128 ]; then
            printf '      ... still running (%ss): %s\n' "$((SECONDS - since))" "${task:-...}"
            continue
        fi
        [ "$status" -eq 0 ] || [ -n "$line" ] || break
        if [ "$mode" != ansible ]; then
            printf '  %s\n' "$line"
            task="$line" since=$SECONDS
        elif [[ $line =~ ^PLAY\ \[(.*)\]\ \*+$ ]]; then
            printf '  PLAY [%s]\n' "$(runbook_name "${BASH_REMATCH[1]}")"
        elif [[ $line =~ ^TASK\ \[(.*)\]\ \*+$ ]]; then
            task="$(runbook_name "${BASH_REMATCH[1]}")" since=$SECONDS pending=1
        elif [[ $line =~ ^(ok|changed): ]]; then
            if [ "$pending" = 1 ] && [ -z "${shown[$task]:-}" ]; then
                printf '    %s\n' "$task"
                shown[$task]=1
            fi
            pending=0
        elif [[ $line =~ ^(fatal|failed):|^ERROR! ]]; then
            [ "$pending" = 1 ] && printf '    %s\n' "$task"
            pending=0
            printf '    %s\n' "${line:0:400}"
        fi
        [ "$status" -eq 0 ] || break
    done
}
# run_playbook NAME INVENTORY ARGS...: full output in lab/NAME.log, task names as progress.
run_playbook() {
    local name="$1" inventory="$2" status
    shift 2
    set +e
    ansible-playbook ${inventory:+-i "$inventory"} "$@" 2>&1 | tee "$LAB_DIR/$name.log" | progress ansible
    status=${PIPESTATUS[0]}
    set -e
    [ "$status" -eq 0 ] || die "$name failed (full output: lab/$name.log)"
    sed -n -E 's/^(\S+)\s+: ok=([0-9]+)\s+changed=([0-9]+).*/    \1: ok=\2 changed=\3/p' "$LAB_DIR/$name.log"
}

clean() {
    # shellcheck source=/dev/null
    . scripts/podman-env.sh
    echo "demo-clean: removing the lab containers, network $NETWORK, lab/ and $PACKAGE_ARCHIVE"
    podman rm -f --time 5 "${CONTAINERS[@]}" >/dev/null 2>&1 || true
    podman network rm "$NETWORK" >/dev/null 2>&1 || true
    if [ -d "$LAB_DIR/admin.gnupg" ]; then
        gpgconf --homedir "$LAB_DIR/admin.gnupg" --kill gpg-agent 2>/dev/null || true
    fi
    rm -rf "$LAB_DIR"
    rm -f "$PACKAGE_ARCHIVE"
    echo "demo-clean: done. Left: the image $IMAGE (shared with molecule; podman rmi $IMAGE removes it)," \
        ".venv and the apt packages (make distclean removes .venv)"
}

if [ "${1:-}" = "clean" ]; then
    clean
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "run as root (podman containers with systemd, apt packages)"

step 1 "Machine set-up: apt packages and .venv (scripts/bootstrap.sh)"
scripts/bootstrap.sh 2>&1 | progress
venv_on_path
collection_link
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_DIR" ANSIBLE_FORCE_COLOR=0
# shellcheck source=/dev/null
. scripts/podman-env.sh

step 2 "Container image $IMAGE"
scripts/build-image.sh "$IMAGE" 2>&1 | progress

step 3 "Lab containers on network $NETWORK ($SUBNET)"
start_lab() {
    reused=0
    if ! podman network exists "$NETWORK"; then
        podman network create --subnet "$SUBNET" "$NETWORK" >/dev/null
        say "network $NETWORK created"
    fi
    for name in "${CONTAINERS[@]}"; do
        if ! podman container exists "$name"; then
            # aardvark-dns says "failed to connect to syslog" when it starts: not a problem here.
            podman run -d --name "$name" --hostname "$name" --network "$NETWORK" \
                --label owner=pkgsign-lab --systemd always "$IMAGE" 2>&1 >/dev/null |
                { grep -v '^failed to connect to syslog' >&2 || true; }
            say "$name started"
        elif [ "$(podman inspect -f '{{.State.Running}}' "$name")" != "true" ]; then
            reused=1
            podman start "$name" >/dev/null 2>&1 || return 1
            say "$name restarted"
        else
            say "$name running (reused)"
            reused=1
        fi
    done
}
# Name resolution between the containers (the client reaches pkgsign-signer by name): seconds
# now instead of a failure in step 8.
preflight_start=$(date +%s%N)
if ! start_lab || ! scripts/check-container-dns.sh "${CONTAINERS[@]}" >/dev/null 2>&1; then
    if [ "${reused:-0}" -eq 1 ]; then
        # A lab left by an earlier run can lose its names (aardvark-dns restarted for another
        # network) or fail to start again. It is disposable: what make demo-clean removes
        # (containers, network, lab/ with its keys) is made again from step 3 on.
        say "the lab left by an earlier run cannot be reused (names or start-up): making it again"
        clean 2>&1 | progress
        start_lab || die "the lab containers do not start"
    fi
    scripts/check-container-dns.sh "${CONTAINERS[@]}" || exit 1
fi
say "containers resolve each other by name ($(( ($(date +%s%N) - preflight_start) / 1000000 )) ms)"

step 4 "deploy-signer: signer + build client (ansible-playbook playbooks/deploy-signer.yml -i inventories/lab)"
mkdir -p "$LAB_DIR/secrets" && chmod 0700 "$LAB_DIR" "$LAB_DIR/secrets"
run_playbook deploy-signer "$INVENTORY" playbooks/deploy-signer.yml

step 5 "Key ceremony, generate phase on pkgsign-bastion: master key, revocation certificate, signing subkey (cycle $CYCLE)"
ADMIN_HOME="$LAB_DIR/admin.gnupg"
admin_vars="$LAB_DIR/secrets/admin-passphrase.yml"
# The root admin's personal key exists before the ceremony (the bastion lists it as an attester).
if [ ! -s "$LAB_DIR/admin.fingerprint" ]; then
    rm -rf "$ADMIN_HOME" && mkdir -p "$ADMIN_HOME" && chmod 0700 "$ADMIN_HOME"
    admin_passphrase="$(random_secret)"
    (umask 077 && printf 'attest_admin_passphrase: "%s"\n' "$admin_passphrase" >"$admin_vars")
    # The passphrase goes to gpg on stdin, never in argv.
    printf '%s\n' "$admin_passphrase" | admin_gpg --pinentry-mode loopback --passphrase-fd 0 \
        --quick-gen-key "Lab Root Admin <root-admin@lab.example.org>" ed25519 cert,sign 1y 2>/dev/null
    unset admin_passphrase
    admin_gpg --with-colons --list-secret-keys | awk -F: '$1 == "fpr" { print $10; exit }' \
        >"$LAB_DIR/admin.fingerprint"
    admin_gpg --armor --export "$(cat "$LAB_DIR/admin.fingerprint")" >"$LAB_DIR/admin.pub.asc"
    say "lab root admin key made: $(cat "$LAB_DIR/admin.fingerprint") (passphrase in lab/secrets/admin-passphrase.yml, 0600)"
else
    say "lab root admin key $(cat "$LAB_DIR/admin.fingerprint") (reused)"
fi
# The master key passphrase: random, made once, 0600, read by ansible-playbook from a file.
master_vars="$LAB_DIR/secrets/master-passphrase.yml"
if [ ! -s "$master_vars" ]; then
    (umask 077 && printf 'bastion_master_passphrase: "%s"\n' "$(random_secret)" >"$master_vars")
    say "master key passphrase made: lab/secrets/master-passphrase.yml (0600)"
fi
run_playbook rotate-key "$INVENTORY" -e "@$master_vars" -e "bastion_cycle=$CYCLE" playbooks/rotate-key.yml
# What the root admins read on the bastion's screen before attesting.
bastion_keys="$(podman exec -e LC_ALL=C pkgsign-bastion gpg --batch --homedir /root/signing.gnupg \
    --with-colons --list-keys)"
FPR="$(printf '%s\n' "$bastion_keys" | awk -F: -v cycle="($CYCLE)" '
    $1 == "pub" { fpr = ""; want = 1 } $1 == "fpr" && fpr == "" { fpr = $10 }
    $1 == "uid" && index($10, cycle) && want { print fpr; want = 0 }')"
[ "$(printf '%s\n' "$FPR" | grep -c .)" -eq 1 ] || die "expected one master key for cycle $CYCLE on the bastion, found: ${FPR:-none}"
SUBKEY_ID="$(printf '%s\n' "$bastion_keys" | awk -F: -v fpr="$FPR" '
    $1 == "pub" { inside = 0 } $1 == "fpr" && $10 == fpr { inside = 1 }
    $1 == "sub" && inside && $12 ~ /s/ { print $5; exit }')"
PUBLISHED="$CEREMONY_DIR/$CYCLE/publication/0x${FPR,,}.txt"
[ -s "$PUBLISHED" ] || die "the ceremony did not publish $PUBLISHED"
say "master key $FPR (certify only, stays on the bastion); signing subkey $SUBKEY_ID"
say "published: ${PUBLISHED#"$COLLECTION_ROOT/"}"

step 6 "Attestation by the lab root admin on this machine (playbooks/attest-key.yml, own key in lab/admin.gnupg)"
say "fingerprint read on the bastion: $(printf '%s\n' "$FPR" | sed -e 's/.\{4\}/& /g' -e 's/ $//')"
run_playbook attest-key "" -e "attest_cycle=$CYCLE" -e "attest_fingerprint=$FPR" \
    -e "attest_admin_key=$(cat "$LAB_DIR/admin.fingerprint")" -e "attest_gnupg_home=$ADMIN_HOME" \
    -e "attest_controller_dir=$CEREMONY_DIR" -e "@$admin_vars" playbooks/attest-key.yml
gpgconf --homedir "$ADMIN_HOME" --kill gpg-agent 2>/dev/null || true
say "certification: ${CEREMONY_DIR#"$COLLECTION_ROOT/"}/$CYCLE/attestations/$(cat "$LAB_DIR/admin.fingerprint").asc"

step 7 "Switch-over: quorum 1 of 1 checked on the bastion, signing subkey installed on pkgsign-signer"
in_service="$(podman exec pkgsign-signer sudo -u pkgsign-client sign -u "$ALIAS" -k 2>/dev/null || true)"
if [ "$(cat "$LAB_DIR/release.fingerprint" 2>/dev/null)" = "$FPR" ] && [ "${in_service^^}" = "$SUBKEY_ID" ]; then
    say "alias $ALIAS -> $FPR already in service on pkgsign-signer (subkey $SUBKEY_ID): nothing to switch (reused)"
else
    run_playbook switch-over "$INVENTORY" -e "@$master_vars" -e "bastion_cycle=$CYCLE" --tags switch-over \
        playbooks/rotate-key.yml
    grep -E 'Attested by|sec# 0x' "$LAB_DIR/switch-over.log" | sed -e 's/^ *"msg": //' -e 's/^/  /' | sort -u
    printf '%s\n' "$FPR" >"$LAB_DIR/release.fingerprint"
fi

step 8 "Remote signing from pkgsign-client: an RPM (per-project key, Copr style) and a tarball (the ceremony's key)"
out="$LAB_DIR/out"
rm -rf "$out" && mkdir -p "$out"
in_client sh -c 'rm -rf /root/demo && mkdir -p /root/demo/rpmbuild/SPECS'
podman exec -i pkgsign-client sh -c 'cat > /root/demo/rpmbuild/SPECS/hello.spec' <<'SPEC'
Name: pkgsign-demo-hello
Version: 1.0
Release: 1
Summary: Sample package signed by the pkgsign demo
License: MIT
BuildArch: noarch
%description
Signed remotely: the build client sent only a hash state; the signer finished the hash.
%install
mkdir -p %{buildroot}/usr/share/pkgsign-demo
echo hello > %{buildroot}/usr/share/pkgsign-demo/hello.txt
%files
/usr/share/pkgsign-demo/hello.txt
SPEC
# rpmbuild's helper scripts are chatty on a minimal system: show their output only on failure.
in_client rpmbuild --quiet --define '_topdir /root/demo/rpmbuild' -bb /root/demo/rpmbuild/SPECS/hello.spec \
    >"$out/rpmbuild.log" 2>&1 || { cat "$out/rpmbuild.log" >&2; die "rpmbuild failed"; }
rpm_path="$(in_client sh -c 'ls /root/demo/rpmbuild/RPMS/noarch/*.rpm')"
in_client tar -C /root/demo -czf /root/demo/hello-1.0.tar.gz rpmbuild/SPECS
say "built $(basename "$rpm_path") and hello-1.0.tar.gz on pkgsign-client"
# Copr's flow: a per-project key made on demand through POST /gen_key (201 new, 200 existing).
project=demo#hello@copr
# Server, CA and token as /etc/sign.conf names them (HTTPS, the server verified against the lab CA).
status="$(in_client python3 -c '
import json, ssl, sys, urllib.request, urllib.error
conf = dict(line.split(":", 1) for line in open("/etc/sign.conf") if ":" in line and not line.startswith("#"))
conf = {key.strip(): value.strip() for key, value in conf.items()}
token = open(conf["token_file"]).read().strip()
context = ssl.create_default_context(cafile=conf.get("ca_file"))
body = json.dumps({"name_real": "pkgsign demo", "name_email": sys.argv[1]}).encode()
request = urllib.request.Request(conf["server"] + "/gen_key", data=body, method="POST",
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, timeout=300, context=context).status)
except urllib.error.HTTPError as err:
    print(err.code, err.read().decode().strip())
' "$project")"
case "$status" in 200|201) say "POST /gen_key $project: $status" ;; *) die "POST /gen_key failed: $status" ;; esac
in_client sign -u "$project" -4 -h sha256 -r "$rpm_path"
say "sign -u $project -4 -h sha256 -r $(basename "$rpm_path"): done"
in_client sign -u "$project" -p > "$out/project-public.asc"
# The release flow: the ceremony's key, under the alias the switch-over set (subkey only on the signer).
in_client sign -u "$ALIAS" -d /root/demo/hello-1.0.tar.gz
say "sign -u $ALIAS -d hello-1.0.tar.gz: hello-1.0.tar.gz.asc written"
for file in "$rpm_path" /root/demo/hello-1.0.tar.gz /root/demo/hello-1.0.tar.gz.asc; do
    podman cp "pkgsign-client:$file" "$out/"
done
secret_files="$(in_client sh -c 'find / -xdev -path "*/private-keys-v1.d/*" -type f 2>/dev/null | wc -l')"
# Access control: the lab's restricted token may use the per-project keys only.
podman cp "$LAB_DIR/secrets/restricted.token" pkgsign-client:/root/demo/restricted.token
in_client chmod 0600 /root/demo/restricted.token
in_client sh -c 'echo "access control in the lab" > /root/demo/access.txt'
restricted() { podman exec -e SIGN_TOKEN_FILE=/root/demo/restricted.token pkgsign-client "$@"; }
say "access control: the token lab-restricted (lab/secrets/restricted.token) may use demo#*@copr keys only"
say "  sign -t: $(restricted sign -t)"
restricted sign -u "$project" -d /root/demo/access.txt
say "  sign -u $project -d access.txt: signed"
if refused="$(restricted sign -u "$ALIAS" -d /root/demo/access.txt 2>&1)"; then
    die "the restricted token signed with $ALIAS: access control is not working"
fi
say "  sign -u $ALIAS -d access.txt: refused, as it must be: $refused"

step 9 "Verification on this machine with stock tools"
rpm_file="$out/$(basename "$rpm_path")"
rm -rf "$out/rpmdb" "$out/gnupg" && mkdir -p "$out/rpmdb" "$out/gnupg" && chmod 0700 "$out/gnupg"
rpmkeys --dbpath "$out/rpmdb" --import "$out/project-public.asc"
rpm_check="$(rpmkeys --dbpath "$out/rpmdb" --checksig "$rpm_file")"
say "rpmkeys --checksig: $rpm_check"
case "$rpm_check" in *"digests signatures OK"*) ;; *) die "RPM signature did not verify" ;; esac
# Against the ceremony's published minimal public key, not against what the signer says.
LC_ALL=C gpg --batch --quiet --homedir "$out/gnupg" --import "$PUBLISHED" 2>/dev/null
gpg_status="$(LC_ALL=C gpg --batch --homedir "$out/gnupg" --status-fd 1 \
    --verify "$out/hello-1.0.tar.gz.asc" "$out/hello-1.0.tar.gz" 2>/dev/null)" || die "tarball signature did not verify"
signer_fpr="$(printf '%s\n' "$gpg_status" | awk '$2 == "VALIDSIG" { print $3 }')"
primary_fpr="$(printf '%s\n' "$gpg_status" | awk '$2 == "VALIDSIG" { print $NF }')"
[ "$primary_fpr" = "$FPR" ] || die "tarball signed by $signer_fpr of ${primary_fpr:-no key}, not by the ceremony's key $FPR"
gpgconf --homedir "$out/gnupg" --kill gpg-agent 2>/dev/null || true
say "gpg --verify with ${PUBLISHED#"$COLLECTION_ROOT/"}: good signature by subkey $signer_fpr (primary $FPR)"

cat <<SUMMARY

==================================================================== pkgsign demo summary
  signer        pkgsign-signer  httpd + mod_wsgi, HTTPS on :5003 (lab CA: lab/tls-ca), keys in /var/lib/pkgsign (0700)
  build client  pkgsign-client  sign client only; private key files found: $secret_files
  ceremony      cycle $CYCLE on pkgsign-bastion: master key $FPR
                (certify only, stays on the bastion; attested by the lab root admin, quorum 1)
                published   ${PUBLISHED#"$COLLECTION_ROOT/"}
                revocation  lab/ceremony/$CYCLE/revocation/ (keep offline)
  keys          $ALIAS -> $FPR (signing subkey only on the signer)
                project $project (made by POST /gen_key)
  signed        $(basename "$rpm_path") with the project key: rpmkeys digests signatures OK
                hello-1.0.tar.gz with the ceremony's signing subkey: gpg good signature
  access        token lab-restricted may use demo#*@copr keys only: signing with $ALIAS refused (403)
  outputs       lab/out/ (signed files); playbook logs lab/*.log
  took          $(($(date +%s) - START)) s

  explore the lab (pkgsign-admin runs as the service user pkgsign, also when started as root)
    tokens      ls -l lab/secrets/        client.token (lab-client), local.token (lab-local),
                                          restricted.token (lab-restricted)
    check one   podman exec pkgsign-client sign -t
                podman exec -e SIGN_TOKEN_FILE=/root/demo/restricted.token pkgsign-client sign -t
    sign        podman exec pkgsign-client sign -u $ALIAS -d /root/demo/access.txt
    config      podman exec pkgsign-signer cat /etc/pkgsign/pkgsign.conf
    tokens      podman exec pkgsign-signer pkgsign-admin token list
    access log  podman exec pkgsign-signer tail /var/log/apache2/pkgsign-access.log
    service log podman exec pkgsign-signer tail /var/log/pkgsign/pkgsign.log
    audit       podman exec pkgsign-signer pkgsign-admin audit verify
    maintain    podman exec pkgsign-signer systemctl start pkgsign-maintain.service
                podman exec pkgsign-signer journalctl -u pkgsign-maintain.service -o cat
    a shell     podman exec -it pkgsign-signer bash
  clean up      make demo-clean (containers, network, lab/; the image stays)
=========================================================================================
SUMMARY
