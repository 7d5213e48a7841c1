# Sourced by the install scripts (not run on its own): installs one npm package, at a pinned
# version, into a cache prefix unless that version is already there. Progress goes to stderr
# through the caller's `log` function; stdout stays untouched.
#
#   npm_install_pinned PREFIX PACKAGE VERSION

# The version of PACKAGE installed under PREFIX, or nothing.
npm_installed_version() {
    local pkg="$1/node_modules/$2/package.json"
    [ -f "$pkg" ] || return 0
    sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' "$pkg" | head -n 1
}

npm_install_pinned() {
    local prefix="$1" package="$2" version="$3"
    mkdir -p "$prefix"
    if [ "$(npm_installed_version "$prefix" "$package")" != "$version" ]; then
        log "installing $package@$version into $prefix"
        npm install --prefix "$prefix" --no-audit --no-fund --no-save "$package@$version" >&2
    else
        log "$package@$version already installed in $prefix"
    fi
}
