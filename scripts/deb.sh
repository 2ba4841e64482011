#!/bin/sh
# `make deb`: the Debian binary package kamailio-dmq-rs for one Kamailio
# release, from the module `make` (host) or `make KAMAILIO=6.0|6.1` built, with
# Debian's own tools: dpkg-shlibdeps (library dependencies), dpkg-gencontrol
# (DEBIAN/control from packaging/control.in and a generated changelog),
# dpkg-deb --root-owner-group (the archive), then lintian.
#
#   scripts/deb.sh host|6.0|6.1
#
# Prints the .deb's path. The package holds the module in Kamailio's module
# directory (as the kamailio package of that release has it), the README,
# the admin guide, the documents the README links (security, faults and
# healing, releases and upgrades) and the example configs under
# /usr/share/doc, and depends
# on the upstream version of kamailio it was built against, whatever the
# Debian revision (`>= 6.0.1, << 6.0.2~`): a security update that keeps the
# upstream version keeps the module installable, and Kamailio's own load-time
# check (version and compile flags) stays the guard.
# DEB_MAINTAINER overrides the Maintainer field.
set -eu

die() { echo "deb.sh: $*" >&2; exit 1; }

top=$(cd "$(dirname "$0")/.." && pwd)
release=${1:-host}
name=kamailio-dmq-rs
case "$release" in
    host)
        module="$top/build/dmq_rs.so"
        in_root() { "$@"; }
        ;;
    6.0 | 6.1)
        module="$top/build/kamailio-$release/dmq_rs.so"
        case $release in 6.0) root="$top/.cache/debian13-root" ;; 6.1) root="$top/.cache/debian-testing-root" ;; esac
        [ -x "$root/usr/sbin/kamailio" ] || die "no Debian root for $release in $root (run make deps)"
        in_root() { chroot "$root" "$@"; }
        ;;
    *) die "unknown release $release (host, 6.0 or 6.1)" ;;
esac
[ -f "$module" ] || die "$module is missing (run make build / make build-$release)"
for tool in dpkg-shlibdeps dpkg-gencontrol dpkg-deb lintian; do
    command -v $tool >/dev/null || die "$tool is missing (run make deps)"
done

# What the module is built against: the kamailio package of that root.
kamailio_version=$(in_root dpkg-query -W -f='${Version}' kamailio) || die "kamailio is not installed ($release)"
upstream=${kamailio_version#*:}
upstream=${upstream%-*}
# The range of Debian versions with this upstream version: from the bare
# upstream version (below any revision of it) to the next patch release
# (below any pre-release of it); the epoch, if any, kept.
case $kamailio_version in *:*) epoch=${kamailio_version%%:*}: ;; *) epoch= ;; esac
case $upstream in
    *[!0-9.]* | *..* | .* | *.) die "cannot tell the next release after kamailio $upstream" ;;
esac
next=$(echo "$upstream" | awk -F. -v OFS=. '{ $NF = $NF + 1; print }')
moddir=$(dirname "$(in_root dpkg -L kamailio | grep '/modules/tm.so$' | head -1)")
[ "$moddir" != . ] || die "cannot find Kamailio's module directory ($release)"
codename=$(in_root sh -c '. /etc/os-release && echo "$VERSION_CODENAME"')
arch=$(in_root dpkg --print-architecture)

crate_version=$(sed -n 's/^version = "\(.*\)"/\1/p' "$top/Cargo.toml" | head -1)
version="$crate_version-1~kamailio$upstream"
maintainer=${DEB_MAINTAINER:-dmq_rs developers <dmq-rs@example.org>}
# The changelog's date: the commit's, so a rebuild of one commit is the same.
date=$(git -C "$top" log -1 --format=%cD 2>/dev/null || date -R)

work="$top/build/deb/$release"
pkg="$work/debian/$name"  # debhelper's layout, where dpkg-shlibdeps expects it
rm -rf "$work"
mkdir -p "$pkg/DEBIAN"

subst() {
    sed -e "s|@MAINTAINER@|$maintainer|g" -e "s|@ARCH@|$arch|g" -e "s|@KAMAILIO_VERSION@|$kamailio_version|g" \
        -e "s|@KAMAILIO_UPSTREAM@|$upstream|g" -e "s|@KAMAILIO_MIN@|$epoch$upstream|g" \
        -e "s|@KAMAILIO_BELOW@|$epoch$next~|g" -e "s|@VERSION@|$crate_version|g" "$@"
}
subst "$top/packaging/control.in" > "$work/debian/control"
{
    echo "$name ($version) $codename; urgency=medium"
    echo
    subst "$top/packaging/changelog.entries"
    echo
    echo " -- $maintainer  $date"
} > "$work/debian/changelog"

# The files.
install -d -m 0755 "$pkg$moddir" "$pkg/usr/share/doc/$name/examples"
install -m 0644 "$module" "$pkg$moddir/dmq_rs.so"
strip --strip-unneeded --remove-section=.comment --remove-section=.note "$pkg$moddir/dmq_rs.so"
doc="$pkg/usr/share/doc/$name"
install -m 0644 "$top/packaging/copyright" "$doc/copyright"
install -m 0644 "$top/README.md" "$doc/README.md"
install -m 0644 "$top/doc/dmq_rs.md" "$doc/dmq_rs.md"
guides="security.md faults-and-healing.md releases-and-upgrades.md"
for guide in $guides; do install -m 0644 "$top/doc/$guide" "$doc/$guide"; done
install -m 0644 "$top"/cfg-examples/*.cfg "$doc/examples/"
gzip -9n "$doc/README.md" "$doc/dmq_rs.md"
for guide in $guides; do gzip -9n "$doc/$guide"; done
gzip -9nc "$work/debian/changelog" > "$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# Control: shared-library dependencies, then the control file (with
# Installed-Size) and the md5sums. Both builds are linked on this machine
# (only the headers differ), so its dpkg-shlibdeps gives the C library
# versions they need, which Debian 13 has as well.
(
    cd "$work"
    echo "misc:Depends=" > debian/substvars
    dpkg-shlibdeps -Tdebian/substvars "debian/$name$moddir/dmq_rs.so"
    dpkg-gencontrol -p"$name" -P"debian/$name" -Tdebian/substvars -fdebian/files
)
(cd "$pkg" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum > DEBIAN/md5sums)
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/md5sums"

deb="$top/build/deb/${name}_${version}_$arch.deb"
SOURCE_DATE_EPOCH=$(git -C "$top" log -1 --format=%ct 2>/dev/null || date +%s) \
    dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >&2

# lintian: errors fail the build; warnings are shown.
lintian --fail-on error --tag-display-limit 0 "$deb" >&2 || die "lintian found errors in $deb"
echo "$deb"
