# NixOS module for berth: services.berth.{enable, package, settings, containers, networks,
# fromOciContainers}. The container and network files come from the pure library in ./lib (what
# CI evaluates and checks with `berth check`); this file adds the option types and the system
# integration: berthd.service, /etc/berth, the runtime tools berthd and the shims run.
{ config, lib, pkgs, ... }:

let
  inherit (lib) mkOption mkEnableOption types mkIf literalExpression;
  cfg = config.services.berth;
  berthLib = import ./lib;
  json = pkgs.formats.json { };

  # A file that holds a secret: a runtime path (agenix, sops-nix, systemd credentials), never a
  # store path, which every user of the machine can read.
  secretPath = types.addCheck types.str (p: lib.hasPrefix "/" p && !lib.hasPrefix builtins.storeDir p) // {
    description = "absolute path outside the Nix store";
  };
  nullOr = types.nullOr;
  strList = types.listOf types.str;
  duration = types.str // { description = "duration (Compose notation: 10s, 1m30s, 500ms)"; };

  healthcheckOpts = {
    options = {
      test = mkOption {
        type = nullOr (types.either types.str strList);
        default = null;
        example = [ "CMD" "curl" "-f" "http://localhost/" ];
        description = ''Docker's test: `["CMD", args…]`, `["CMD-SHELL", "command"]`, `["NONE"]`, or a shell command string. Unset: the image's.'';
      };
      interval = mkOption { type = nullOr duration; default = null; example = "10s"; description = "Time between checks."; };
      timeout = mkOption { type = nullOr duration; default = null; example = "3s"; description = "Time a check may take."; };
      retries = mkOption { type = nullOr types.ints.unsigned; default = null; example = 3; description = "Failures in a row that make the container unhealthy."; };
      startPeriod = mkOption { type = nullOr duration; default = null; example = "30s"; description = "Start-up time during which failures do not count."; };
      disable = mkOption { type = types.bool; default = false; description = "Turn off the image's health check."; };
    };
  };

  dependencyOpts = {
    options = {
      condition = mkOption {
        type = types.enum [ "service_started" "service_healthy" "service_completed_successfully" ];
        default = "service_started";
        description = "What this container waits for (`service_healthy` needs `readiness = \"healthy\"` on the dependency).";
      };
      required = mkOption { type = types.bool; default = true; description = "A missing dependency keeps this container from starting (`Requires=`; false: `Wants=`)."; };
      restart = mkOption { type = types.bool; default = false; description = "Restart this container when the dependency restarts."; };
    };
  };

  containerOpts = { name, ... }: {
    options = {
      image = mkOption {
        type = nullOr types.str;
        default = null;
        example = "docker.io/library/nginx:1.27";
        description = "Image reference, pulled by berthd (Docker's normalisation: `nginx` is `docker.io/library/nginx:latest`). Set this or `imageFile`.";
      };
      imageFile = mkOption {
        type = nullOr types.path;
        default = null;
        example = literalExpression ''pkgs.dockerTools.buildImage { name = "hello"; config.Cmd = [ "''${pkgs.hello}/bin/hello" ]; }'';
        description = "A docker or OCI archive, such as a `dockerTools` image: imported once, keyed by its digest, not on every start.";
      };
      pullPolicy = mkOption { type = nullOr (types.enum [ "always" "missing" "never" ]); default = null; description = "When to pull `image` (berth's default: `missing`)."; };
      command = mkOption { type = nullOr (types.either types.str strList); default = null; example = [ "nginx" "-g" "daemon off;" ]; description = "Arguments to the entrypoint (the image's `Cmd` when unset); a string is split like a shell would, without running one."; };
      entrypoint = mkOption { type = nullOr (types.either types.str strList); default = null; description = "Overrides the image's entrypoint."; };
      environment = mkOption { type = types.attrsOf types.str; default = { }; example = { TZ = "UTC"; }; description = "Environment variables. Written to a world-readable file: put secrets in `environmentFiles`."; };
      environmentFiles = mkOption { type = types.listOf secretPath; default = [ ]; example = [ "/run/secrets/web.env" ]; description = "Files of `KEY=value` lines read by berthd at each start (paths outside the store: agenix, sops-nix). A change of their content restarts the container."; };
      user = mkOption { type = nullOr types.str; default = null; example = "101:101"; description = "`user[:group]` by name or number, inside the image."; };
      workingDir = mkOption { type = nullOr types.str; default = null; description = "Working directory inside the container."; };
      hostname = mkOption { type = nullOr types.str; default = null; description = "Host name (not with `networkMode = \"host\"`)."; };
      ports = mkOption { type = strList; default = [ ]; example = [ "127.0.0.1:8080:80" "5353:53/udp" ]; description = "Published ports in Compose's short syntax (bridge networking). Published ports bypass the NixOS firewall's INPUT rules, as with Docker: name an address."; };
      volumes = mkOption { type = strList; default = [ ]; example = [ "/srv/www:/usr/share/nginx/html:ro" "cache:/var/cache/nginx" ]; description = "Bind mounts (`/host:/container[:ro]`) and named volumes (`name:/container`)."; };
      tmpfs = mkOption { type = strList; default = [ ]; example = [ "/tmp" ]; description = "tmpfs mounts (`/path[:options]`)."; };
      readOnly = mkOption { type = types.bool; default = false; description = "Mount the root file system read-only."; };
      networkMode = mkOption { type = nullOr (types.enum [ "bridge" "host" "none" ]); default = null; description = "berth's default bridge (the default), the host's network, or none."; };
      networks = mkOption {
        type = nullOr (types.either strList (types.attrsOf (types.submodule {
          options = {
            aliases = mkOption { type = strList; default = [ ]; description = "More names of this container on the network."; };
            ipv4Address = mkOption { type = nullOr types.str; default = null; description = "A fixed address in the network's subnet."; };
          };
        })));
        default = null;
        example = { backend = { aliases = [ "db" ]; }; };
        description = "Named networks (`services.berth.networks`) this container joins.";
      };
      memLimit = mkOption { type = nullOr types.str; default = null; example = "256M"; description = "Memory limit (`MemoryMax=`)."; };
      cpus = mkOption { type = nullOr (types.either types.int types.float); default = null; example = 0.5; description = "CPU limit in CPUs (`CPUQuota=`)."; };
      pidsLimit = mkOption { type = nullOr types.int; default = null; example = 200; description = "Task limit (`TasksMax=`); -1 is unlimited."; };
      ulimits = mkOption {
        type = types.attrsOf (types.either types.ints.unsigned (types.submodule {
          options = {
            soft = mkOption { type = types.ints.unsigned; description = "Soft limit."; };
            hard = mkOption { type = types.ints.unsigned; description = "Hard limit."; };
          };
        }));
        default = { };
        example = { nofile = { soft = 1024; hard = 4096; }; };
        description = "Resource limits by name (`nofile`, `nproc`, …).";
      };
      capAdd = mkOption { type = strList; default = [ ]; example = [ "NET_ADMIN" ]; description = "Capabilities added to Docker's default set."; };
      capDrop = mkOption { type = strList; default = [ ]; example = [ "NET_RAW" ]; description = "Capabilities dropped (`ALL` for every one)."; };
      securityOpt = mkOption { type = strList; default = [ ]; example = [ "no-new-privileges" "seccomp=/etc/berth/profile.json" ]; description = "`no-new-privileges[:bool]`, `seccomp=unconfined|FILE`."; };
      devices = mkOption { type = strList; default = [ ]; example = [ "/dev/fuse" ]; description = "Device nodes passed through (`/dev/host[:/dev/container[:rwm]]`)."; };
      sysctls = mkOption { type = types.attrsOf types.str; default = { }; description = "Namespaced sysctls."; };
      labels = mkOption { type = types.attrsOf types.str; default = { }; description = "Labels (shown by `berth inspect`)."; };
      stopSignal = mkOption { type = nullOr types.str; default = null; example = "SIGQUIT"; description = "Signal that stops the container (the image's, else SIGTERM)."; };
      stopGracePeriod = mkOption { type = nullOr duration; default = null; example = "30s"; description = "Time between the stop signal and SIGKILL (berth's default: 10s)."; };
      restart = mkOption { type = nullOr types.str; default = null; example = "always"; description = "`no`, `always`, `unless-stopped`, `on-failure[:N]` (berth's default: `no`)."; };
      healthcheck = mkOption { type = nullOr (types.submodule healthcheckOpts); default = null; description = "Health check run by the container's shim."; };
      dependsOn = mkOption {
        type = nullOr (types.either strList (types.attrsOf (types.submodule dependencyOpts)));
        default = null;
        example = { db = { condition = "service_healthy"; }; };
        description = "Containers this one starts after (names, or name -> condition).";
      };
      readiness = mkOption { type = nullOr (types.enum [ "started" "healthy" "notify" ]); default = null; description = "When the unit turns active: when the process runs, after the first passing health check, or on the application's own READY=1."; };
      init = mkOption { type = types.bool; default = false; description = "Run the program under tini as PID 1 (reaps zombies, forwards signals)."; };
      tty = mkOption { type = types.bool; default = false; description = "Give the container a terminal (held by its shim)."; };
      stdinOpen = mkOption { type = types.bool; default = false; description = "Keep stdin open for `berth exec`/attach."; };
      extraSpec = mkOption { type = json.type; default = { }; description = "Spec keys merged as they are, for keys without an option here."; };
    };
  };

  networkOpts = {
    options = {
      subnet = mkOption { type = nullOr types.str; default = null; example = "10.89.1.0/24"; description = "IPv4 subnet (berth picks a free one when unset)."; };
      gateway = mkOption { type = nullOr types.str; default = null; example = "10.89.1.1"; description = "The bridge's address (the subnet's first when unset)."; };
      ipv6Subnet = mkOption { type = nullOr types.str; default = null; description = "IPv6 subnet, for dual stack."; };
      internal = mkOption { type = types.bool; default = false; description = "No route out of the network (no NAT)."; };
      dns = mkOption { type = types.bool; default = true; description = "Containers find each other by name (aardvark-dns)."; };
      interface = mkOption { type = nullOr types.str; default = null; description = "The host's bridge interface name."; };
      labels = mkOption { type = types.attrsOf types.str; default = { }; description = "Labels."; };
    };
  };

  # The netavark berth runs: with iptables (which netavark runs from PATH) and aardvark-dns found.
  netavark = pkgs.writeShellScript "netavark" ''
    PATH=${lib.makeBinPath [ pkgs.iptables pkgs.aardvark-dns ]}''${PATH:+:$PATH}
    exec ${pkgs.netavark}/bin/netavark "$@"
  '';

  ociCfg = config.virtualisation.oci-containers;
  fromOci = lib.mapAttrs (_: oc: berthLib.fromOciContainer oc) ociCfg.containers;

  settingsFile = json.generate "berthd.yaml" cfg.settings;
  files = berthLib.containerFiles cfg.containers // berthLib.networkFiles cfg.networks;
in
{
  options.services.berth = {
    enable = mkEnableOption "berth, a declarative container host agent (berthd)";

    package = mkOption {
      type = types.package;
      default = pkgs.berth or (pkgs.callPackage ./package.nix { });
      defaultText = literalExpression "pkgs.berth";
      description = "The berth package (berthd, berth, berth-shim, berth-runtime).";
    };

    settings = mkOption {
      description = "berthd's settings, written to /etc/berth/berthd.yaml (keys as in that file).";
      default = { };
      type = types.submodule {
        freeformType = json.type;
        options = {
          resync = mkOption { type = duration; default = "5m"; description = "Full resync interval (a safety net; changes are seen at once)."; };
          shim = mkOption { type = types.str; default = "${cfg.package}/bin/berth-shim"; defaultText = literalExpression ''"''${cfg.package}/bin/berth-shim"''; description = "berth-shim."; };
          registries = {
            insecure = mkOption { type = strList; default = [ ]; example = [ "localhost:5000" ]; description = "Registries spoken to over plain HTTP."; };
            mirrors = mkOption { type = strList; default = [ ]; description = "Registry mirrors."; };
            auth_files = mkOption { type = types.listOf secretPath; default = [ ]; example = [ "/run/secrets/registry-auth.json" ]; description = "Docker `config.json` / containers `auth.json` files with registry credentials, read at each pull (never written to the store; unlike `oci-containers`' `login`, nothing runs at start)."; };
            certs_dirs = mkOption { type = strList; default = [ ]; description = "Directories in Docker's `certs.d/<host>/ca.crt` layout (berth's defaults when empty)."; };
            credential_helper_dirs = mkOption { type = strList; default = [ ]; example = literalExpression ''[ "''${pkgs.docker-credential-helpers}/bin" ]''; description = "Where `docker-credential-<name>` helpers are found."; };
          };
          network = {
            subnet = mkOption { type = types.str; default = "10.87.0.0/16"; description = "Subnet of the default bridge network."; };
            interface = mkOption { type = types.str; default = "berth0"; description = "The default bridge's interface."; };
            host_ip = mkOption { type = nullOr types.str; default = null; example = "127.0.0.1"; description = "Host address of published ports that name none (unset: every address)."; };
            netavark = mkOption { type = types.str; default = "${netavark}"; defaultText = "netavark with iptables and aardvark-dns on its PATH"; description = "netavark, run by the shims."; };
            aardvark = mkOption { type = types.str; default = "${pkgs.aardvark-dns}/bin/aardvark-dns"; defaultText = literalExpression ''"''${pkgs.aardvark-dns}/bin/aardvark-dns"''; description = "aardvark-dns, which netavark starts for networks with DNS."; };
          };
        };
      };
    };

    containers = mkOption {
      type = types.attrsOf (types.submodule containerOpts);
      default = { };
      example = literalExpression ''
        {
          web = {
            image = "docker.io/library/nginx:1.27";
            ports = [ "127.0.0.1:8080:80" ];
            healthcheck = { test = [ "CMD" "curl" "-f" "http://localhost/" ]; interval = "10s"; };
            readiness = "healthy";
            restart = "always";
          };
        }
      '';
      description = ''
        Containers, one file /etc/berth/containers/<name>.yaml each. berthd restarts a container
        only when its effective spec changes (the spec, the image digest, the files it names), so a
        switch leaves the others running; removing one stops it.
      '';
    };

    networks = mkOption {
      type = types.attrsOf (types.submodule networkOpts);
      default = { };
      description = "Named networks, one file /etc/berth/networks/<name>.yaml each.";
    };

    dockerCompat = {
      enable = mkEnableOption "the Docker-compatible API socket (/run/berth/docker.sock), so the docker CLI and Docker SDKs can drive berthd";
      group = mkOption {
        type = types.str;
        default = "docker";
        description = "The group whose members may use the socket (created if missing); the socket is mode 0660.";
      };
    };

    fromOciContainers = mkOption {
      type = types.bool;
      default = false;
      description = ''
        Run `virtualisation.oci-containers.containers` with berth instead of podman or docker:
        each becomes a `services.berth.containers` entry (nixos-module/README.md lists the
        mapping) and oci-containers' own units are disabled. Options without a berth counterpart
        are reported as warnings; `privileged` is refused.
      '';
    };
  };

  config = mkIf cfg.enable (lib.mkMerge [
    {
      assertions = lib.mapAttrsToList (name: c: {
        assertion = (c.image == null) != (c.imageFile == null);
        message = "services.berth.containers.${name}: set exactly one of image and imageFile";
      }) cfg.containers;

      environment.systemPackages = [ cfg.package ];

      # Copies, not links into the store: berthd watches /etc/berth/containers, and a changed
      # copy is renamed into place (an event) where a link to /etc/static would not change.
      environment.etc = lib.mapAttrs (_: text: { inherit text; mode = "0644"; }) files // {
        "berth/berthd.yaml".source = settingsFile;
      };

      # `init: true` runs tini from the place berth looks for it.
      systemd.tmpfiles.rules = [
        "L+ /usr/bin/tini-static - - - - ${pkgs.pkgsStatic.tini}/bin/tini"
        "d /etc/berth/containers 0755 root root -"
      ];

      systemd.services.berthd = {
        description = "berth container host agent";
        documentation = [ "man:berthd(8)" ];
        wantedBy = [ "multi-user.target" ];
        wants = [ "network-online.target" ];
        after = [ "network-online.target" "dbus.service" ];
        path = [ pkgs.iptables pkgs.netavark pkgs.aardvark-dns pkgs.util-linux ];
        # Restarting berthd touches no container (they are units of their own), so the switch
        # restarts it when its package or settings change and leaves the containers alone.
        restartIfChanged = true;
        stopIfChanged = false;
        restartTriggers = [ settingsFile ];
        serviceConfig = {
          Type = "notify";
          NotifyAccess = "main";
          ExecStart = "${cfg.package}/bin/berthd";
          TimeoutStartSec = "15min";
          WatchdogSec = "60s";
          Restart = "on-failure";
          RestartSec = "2s";
          KillMode = "control-group";
          StateDirectory = "berth";
          StateDirectoryMode = "0700";
          RuntimeDirectory = "berth";
          RuntimeDirectoryMode = "0711";
          RuntimeDirectoryPreserve = "yes";
        };
      };
    }

    (mkIf cfg.dockerCompat.enable {
      services.berth.settings.docker = {
        enable = true;
        socket = "/run/berth/docker.sock";
        inherit (cfg.dockerCompat) group;
      };
      users.groups.${cfg.dockerCompat.group} = { };
      environment.sessionVariables.DOCKER_HOST = "unix:///run/berth/docker.sock";
    })

    (mkIf cfg.fromOciContainers {
      services.berth.containers = lib.mapAttrs (_: m: m.options) fromOci;
      warnings = lib.concatLists (lib.mapAttrsToList (name: m:
        map (k: "services.berth.fromOciContainers: oci-containers.containers.${name}.${k} has no berth counterpart and is ignored")
          (lib.filter (k: k != "privileged") m.unsupported)) fromOci);
      assertions = lib.mapAttrsToList (name: m: {
        assertion = !(lib.elem "privileged" m.unsupported);
        message = "services.berth.fromOciContainers: oci-containers.containers.${name} is privileged; berth runs no privileged containers (use capabilities)";
      }) fromOci;
      systemd.services = lib.mapAttrs' (name: oc:
        lib.nameValuePair (oc.serviceName or "${ociCfg.backend}-${name}") { enable = lib.mkForce false; })
        ociCfg.containers;
    })
  ]);
}
