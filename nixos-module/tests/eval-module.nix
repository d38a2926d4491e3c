# Evaluates module.nix with nixpkgs' lib.evalModules alone (no nixpkgs, no NixOS): the options the
# module sets outside itself (assertions, environment, systemd, oci-containers) and the few packages
# it names are stand-ins declared here. Run from the repository root with a copy of nixpkgs' lib
# (nix-community/nixpkgs.lib):
#
#   nix-instantiate --eval --strict --json nixos-module/tests/eval-module.nix \
#     --arg lib 'import /path/to/nixpkgs.lib/lib'
#
# Result: the files the module writes under /etc, berthd's unit, the warnings and the failed
# assertions, as JSON (scripts/nix-check.sh checks them when NIXPKGS_LIB is set).
{ lib, secrets ? "/run/secrets" }:
let
  fakeDrv = name: { type = "derivation"; inherit name; outPath = "/nix/store/00000000000000000000000000000000-${name}"; };
  pkgs = {
    berth = fakeDrv "berth";
    iptables = fakeDrv "iptables";
    netavark = fakeDrv "netavark";
    aardvark-dns = fakeDrv "aardvark-dns";
    util-linux = fakeDrv "util-linux";
    pkgsStatic.tini = fakeDrv "tini";
    writeShellScript = name: _text: fakeDrv name;
    formats.json = _: {
      type = with lib.types;
        let v = nullOr (oneOf [ bool int float str path (attrsOf v) (listOf v) ]) // { description = "JSON value"; };
        in v;
      # The text instead of a store file: what the stand-in lets us inspect.
      generate = _name: value: builtins.toJSON value;
    };
  };
  anything = lib.mkOption { type = lib.types.anything; default = null; };
  standIns = { lib, ... }: {
    options = {
      assertions = lib.mkOption { type = lib.types.listOf lib.types.unspecified; default = [ ]; };
      warnings = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
      environment.systemPackages = lib.mkOption { type = lib.types.listOf lib.types.unspecified; default = [ ]; };
      environment.etc = lib.mkOption { type = lib.types.attrsOf (lib.types.attrsOf lib.types.unspecified); default = { }; };
      environment.sessionVariables = lib.mkOption { type = lib.types.attrsOf lib.types.str; default = { }; };
      users.groups = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
      systemd.tmpfiles.rules = lib.mkOption { type = lib.types.listOf lib.types.str; default = [ ]; };
      systemd.services = lib.mkOption { type = lib.types.attrsOf (lib.types.submodule { freeformType = lib.types.attrsOf lib.types.anything; }); default = { }; };
      virtualisation.oci-containers = {
        backend = lib.mkOption { type = lib.types.str; default = "podman"; };
        containers = lib.mkOption { type = lib.types.attrsOf lib.types.anything; default = { }; };
      };
    };
  };
  examples = import ../lib/examples.nix { inherit secrets; };
  eval = lib.evalModules {
    specialArgs = { inherit pkgs; };
    modules = [
      standIns
      ../module.nix
      {
        services.berth = {
          enable = true;
          settings.registries.auth_files = [ "${secrets}/registry-auth.json" ];
          settings.network.host_ip = "127.0.0.1";
          containers = removeAttrs examples.containers [ "job" ] // {
            # A dockerTools image is a derivation.
            job = examples.containers.job // { imageFile = fakeDrv "job.tar.gz"; };
          };
          networks = examples.networks;
          fromOciContainers = true;
          dockerCompat.enable = true;
        };
        virtualisation.oci-containers.containers.legacy = {
          image = "docker.io/library/redis:7";
          cmd = [ "redis-server" "--save" "" ];
          environment = { A = "b"; };
          environmentFiles = [ "${secrets}/redis.env" ];
          ports = [ "127.0.0.1:6379:6379" ];
          volumes = [ "redis:/data" ];
          workdir = "/data";
          capabilities = { NET_ADMIN = true; MKNOD = false; };
          extraOptions = [ "--network=host" ];
          autoStart = true;
          "log-driver" = "journald";
          login = { registry = null; username = null; passwordFile = null; };
        };
      }
    ];
  };
  c = eval.config;
in
{
  etc = lib.mapAttrs (_: e: e.text or e.source) c.environment.etc;
  etcModes = lib.mapAttrs (_: e: e.mode or "symlink") c.environment.etc;
  berthd = c.systemd.services.berthd;
  legacyServiceEnabled = c.systemd.services.podman-legacy.enable;
  warnings = c.warnings;
  failedAssertions = map (a: a.message) (lib.filter (a: !a.assertion) c.assertions);
  tmpfiles = c.systemd.tmpfiles.rules;
  groups = lib.attrNames c.users.groups;
  dockerHost = c.environment.sessionVariables.DOCKER_HOST or null;
}
