# berth built from this repository: berthd, berth, berth-shim, berth-runtime, the unit file, shell
# completions and man pages. The runtime tools berth drives (netavark, aardvark-dns, iptables,
# tini) are in passthru.runtimeDeps; the NixOS module puts them where berthd and the shims find
# them.
{ lib
, rustPlatform
, pkg-config
, libseccomp
, netavark
, aardvark-dns
, iptables
, pkgsStatic
}:

let
  root = ../.;
  # The workspace without build output, Nix files and benchmark results: a change there does not
  # rebuild the package.
  src = lib.cleanSourceWith {
    src = lib.cleanSource root;
    filter = path: type:
      let rel = lib.removePrefix (toString root + "/") (toString path);
      in !(lib.elem rel [ "target" "nixos-module" "flake.nix" "flake.lock" "bench" ]);
  };
in
rustPlatform.buildRustPackage {
  pname = "berth";
  version = (lib.importTOML ../Cargo.toml).workspace.package.version;
  inherit src;

  cargoLock.lockFile = ../Cargo.lock;
  cargoBuildFlags = [ "-p" "berth-agent" "-p" "berth-shim" "-p" "berth-runtime" ];

  nativeBuildInputs = [ pkg-config ];
  buildInputs = [ libseccomp ];

  # The tests need root, namespaces, a systemd to boot and a registry: scripts/test.sh runs them.
  doCheck = false;

  postInstall = ''
    $out/bin/berth generate-docs $out/share
    install -Dm644 contrib/berthd.yaml $out/share/doc/berth/berthd.yaml.example
    install -Dm644 contrib/systemd/berth.conf $out/lib/tmpfiles.d/berth.conf
    mkdir -p $out/lib/systemd/system
    substitute contrib/systemd/berthd.service $out/lib/systemd/system/berthd.service \
      --replace-fail '@BINDIR@' "$out/bin"
  '';

  passthru.runtimeDeps = {
    inherit netavark aardvark-dns iptables;
    tini = pkgsStatic.tini;
  };

  meta = {
    description = "Declarative container host agent for systemd machines";
    license = lib.licenses.asl20;
    platforms = lib.platforms.linux;
    mainProgram = "berth";
  };
}
