#!/usr/bin/env bash
# `make demo`: a signer and a build client in local podman containers, deployed with
# playbooks/deploy-signer.yml; an RPM and a tarball signed remotely (the client never holds a
# private key) and verified on this machine with stock rpmkeys and gpg.
# Second runs reuse the image, the containers and the keys.   `make demo-clean` removes the lab.
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
STEPS=7
START=$(date +%s)

step() { printf '\n\033[1m[demo %s/%s] %s\033[0m  (%ss)\n' "$1" "$STEPS" "$2" "$(($(date +%s) - START))"; }
say() { printf '  %s\n' "$*"; }
die() { printf 'demo: %s\n' "$*" >&2; exit 1; }
in_client() { podman exec pkgsign-client "$@"; }

clean() {
    # shellcheck source=/dev/null
    . scripts/podman-env.sh
    echo "demo-clean: removing the lab containers, network and lab/ (the image stays; podman rmi $IMAGE removes it)"
    podman rm -f --time 5 "${CONTAINERS[@]}" >/dev/null 2>&1 || true
    podman network rm "$NETWORK" >/dev/null 2>&1 || true
    rm -rf "$LAB_DIR"
    echo "demo-clean: done"
}

if [ "${1:-}" = "clean" ]; then
    clean
    exit 0
fi
[ "$(id -u)" -eq 0 ] || die "run as root (podman containers with systemd, apt packages)"

step 1 "Machine set-up: apt packages and .venv (scripts/bootstrap.sh)"
scripts/bootstrap.sh 2>&1 | sed -u 's/^/  /'
export PATH="$VENV_BIN:$PATH"
collection_link
export ANSIBLE_COLLECTIONS_PATH="$COLLECTIONS_DIR" ANSIBLE_FORCE_COLOR=0
# shellcheck source=/dev/null
. scripts/podman-env.sh

step 2 "Container image $IMAGE"
scripts/build-image.sh "$IMAGE" 2>&1 | sed -u 's/^/  /'

step 3 "Lab containers on network $NETWORK ($SUBNET)"
if ! podman network exists "$NETWORK"; then
    podman network create --subnet "$SUBNET" "$NETWORK" >/dev/null
    say "network $NETWORK created"
fi
for name in "${CONTAINERS[@]}"; do
    if ! podman container exists "$name"; then
        podman run -d --name "$name" --hostname "$name" --network "$NETWORK" \
            --label owner=pkgsign-lab --systemd always "$IMAGE" >/dev/null
        say "$name started"
    elif [ "$(podman inspect -f '{{.State.Running}}' "$name")" != "true" ]; then
        podman start "$name" >/dev/null
        say "$name restarted"
    else
        say "$name running (reused)"
    fi
done

step 4 "Release key: certify-only primary on the controller, signing-subkey-only export for the signer"
mkdir -p "$LAB_DIR/secrets" && chmod 0700 "$LAB_DIR" "$LAB_DIR/secrets"
ansible-playbook scripts/lab-release-key.yml -e "lab_key_dir=$LAB_DIR/release-key" 2>&1 |
    grep --line-buffered -E '^(TASK|changed|ok|fatal|failed)' | sed -u -e 's/ \**$//' -e 's/^/  /'
[ "${PIPESTATUS[0]}" -eq 0 ] || die "release key creation failed"
FPR="$(cat "$LAB_DIR/release-key/fingerprint")"
say "release key $FPR"

step 5 "deploy-signer: signer + build client (ansible-playbook playbooks/deploy-signer.yml -i inventories/lab)"
deploy_log="$LAB_DIR/deploy-signer.log"
set +e
ansible-playbook -i inventories/lab/hosts.yml playbooks/deploy-signer.yml 2>&1 | tee "$deploy_log" |
    grep --line-buffered -E '^(PLAY |TASK |fatal|failed)' | sed -u -e 's/ \**$//' -e 's/^/  /'
status=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] || die "deploy-signer failed (full output: $deploy_log)"
grep -A3 '^PLAY RECAP' "$deploy_log" | sed -u 's/^/  /'

step 6 "Remote signing from pkgsign-client: an RPM (per-project key, Copr style) and a tarball (release key)"
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
Signed remotely: the build client sent only a digest to the signer.
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
status="$(in_client python3 -c '
import json, sys, urllib.request, urllib.error
token = open("/etc/pkgsign/sign.token").read().strip()
body = json.dumps({"name_real": "pkgsign demo", "name_email": sys.argv[1]}).encode()
request = urllib.request.Request("http://pkgsign-signer:5003/gen_key", data=body, method="POST",
    headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
try:
    print(urllib.request.urlopen(request, timeout=300).status)
except urllib.error.HTTPError as err:
    print(err.code, err.read().decode().strip())
' "$project")"
case "$status" in 200|201) say "POST /gen_key $project: $status" ;; *) die "POST /gen_key failed: $status" ;; esac
in_client sign -u "$project" -4 -h sha256 -r "$rpm_path"
say "sign -u $project -4 -h sha256 -r $(basename "$rpm_path"): done"
in_client sign -u "$project" -p > "$out/project-public.asc"
# The release flow: the operator-installed release key (signing subkey only on the signer).
in_client sign -u release -d /root/demo/hello-1.0.tar.gz
say "sign -u release -d hello-1.0.tar.gz: hello-1.0.tar.gz.asc written"
in_client sign -u release -p > "$out/release-public.asc"
for file in "$rpm_path" /root/demo/hello-1.0.tar.gz /root/demo/hello-1.0.tar.gz.asc; do
    podman cp "pkgsign-client:$file" "$out/"
done
secret_files="$(in_client sh -c 'find / -xdev -path "*/private-keys-v1.d/*" -type f 2>/dev/null | wc -l')"

step 7 "Verification on this machine with stock tools"
rpm_file="$out/$(basename "$rpm_path")"
rm -rf "$out/rpmdb" "$out/gnupg" && mkdir -p "$out/rpmdb" "$out/gnupg" && chmod 0700 "$out/gnupg"
rpmkeys --dbpath "$out/rpmdb" --import "$out/project-public.asc"
rpm_check="$(rpmkeys --dbpath "$out/rpmdb" --checksig "$rpm_file")"
say "rpmkeys --checksig: $rpm_check"
case "$rpm_check" in *"digests signatures OK"*) ;; *) die "RPM signature did not verify" ;; esac
LC_ALL=C gpg --batch --quiet --homedir "$out/gnupg" --import "$out/release-public.asc" 2>/dev/null
gpg_status="$(LC_ALL=C gpg --batch --homedir "$out/gnupg" --status-fd 1 \
    --verify "$out/hello-1.0.tar.gz.asc" "$out/hello-1.0.tar.gz" 2>/dev/null)" || die "tarball signature did not verify"
signer_fpr="$(printf '%s\n' "$gpg_status" | awk '$2 == "VALIDSIG" { print $3 }')"
say "gpg --verify: good signature by subkey $signer_fpr (primary $FPR)"

cat <<SUMMARY

==================================================================== pkgsign demo summary
  signer        pkgsign-signer  httpd + mod_wsgi on :5003, keys in /var/lib/pkgsign (0700)
  build client  pkgsign-client  sign client only; private key files found: $secret_files
  keys          release $FPR (signing subkey only on the signer)
                project $project (made by POST /gen_key)
  signed        $(basename "$rpm_path") with the project key: rpmkeys digests signatures OK
                hello-1.0.tar.gz with the release subkey: gpg good signature
  outputs       lab/out/ (signed files, public key); deploy log lab/deploy-signer.log
  try           podman exec -it pkgsign-client sign -u release -p
  clean up      make demo-clean
  took          $(($(date +%s) - START)) s
=========================================================================================
SUMMARY
