#!/usr/bin/env bash
# Runs shellcheck over every shell script in the repository: *.sh files and files whose shebang
# names bash or sh. Settings (how sourced files are found) live in .shellcheckrc.
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_ROOT"

# A clean machine gets shellcheck with the project's other Debian packages.
command -v shellcheck >/dev/null || "$HACK_DIR/install-packages.sh"

scripts=()
while IFS= read -r -d '' file; do
  if [[ $file == *.sh ]] || head -n1 "$file" | grep -qE '^#!.*[/ ](ba)?sh([[:space:]]|$)'; then
    scripts+=("$file")
  fi
done < <(git ls-files -z --cached --others --exclude-standard)
[ ${#scripts[@]} -gt 0 ] || die "no shell scripts found under $REPO_ROOT"
shellcheck "${scripts[@]}"
