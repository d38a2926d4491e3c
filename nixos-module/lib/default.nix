# Pure spec generation for berth: the NixOS module's container and network options -> the attribute
# sets written as /etc/berth/containers/<name>.yaml and /etc/berth/networks/<name>.yaml (as JSON,
# which is YAML). Needs neither nixpkgs nor its lib, so CI evaluates it with a bare
# `nix-instantiate --eval --strict` and checks the output with `berth check`.
#
# Option names are camelCase (NixOS style, close to virtualisation.oci-containers); the spec keys
# are berth's snake_case ones (Docker Compose's names). Unset values (null, [], {}) are left out,
# so the file holds what the user wrote and berth's defaults stay berth's.
let
  inherit (builtins)
    attrNames filter listToAttrs map isAttrs isList isString removeAttrs hasAttr toJSON;

  isUnset = v: v == null || v == [ ] || v == { };
  # Drops unset values.
  clean = a: removeAttrs a (filter (k: isUnset a.${k}) (attrNames a));
  mapAttrs' = f: a: listToAttrs (map (k: f k a.${k}) (attrNames a));
  # An attribute of `c` when present (the options module gives all; a plain attrset some).
  get = c: k: if hasAttr k c then c.${k} else null;
  # A derivation (dockerTools.buildImage) or a path becomes its store path.
  pathString = v: if v == null then null else toString v;

  healthcheck = h:
    if h == null then null else clean {
      test = get h "test";
      interval = get h "interval";
      timeout = get h "timeout";
      retries = get h "retries";
      start_period = get h "startPeriod";
      disable = if get h "disable" == true then true else null;
    };

  # A list of names, or name -> { condition, required, restart }.
  dependsOn = d:
    if d == null || isList d then d
    else builtins.mapAttrs (_: o: clean {
      condition = get o "condition";
      required = if get o "required" == false then false else null;
      restart = if get o "restart" == true then true else null;
    }) d;

  # A list of network names, or name -> { aliases, ipv4Address }.
  networks = n:
    if n == null || isList n then n
    else builtins.mapAttrs (_: o: clean {
      aliases = get o "aliases";
      ipv4_address = get o "ipv4Address";
    }) n;

  boolKey = v: if v == true then true else null;
in
rec {
  # Container options -> the spec (`berth check` accepts it). `extraSpec` is merged last, raw,
  # for keys this library does not know yet.
  containerSpec = c:
    clean {
      image = get c "image";
      image_file = pathString (get c "imageFile");
      pull_policy = get c "pullPolicy";
      command = get c "command";
      entrypoint = get c "entrypoint";
      environment = get c "environment";
      env_file = map toString (if get c "environmentFiles" == null then [ ] else c.environmentFiles);
      user = get c "user";
      working_dir = get c "workingDir";
      hostname = get c "hostname";
      ports = get c "ports";
      volumes = get c "volumes";
      tmpfs = get c "tmpfs";
      read_only = boolKey (get c "readOnly");
      network_mode = get c "networkMode";
      networks = networks (get c "networks");
      mem_limit = get c "memLimit";
      cpus = get c "cpus";
      pids_limit = get c "pidsLimit";
      ulimits = get c "ulimits";
      cap_add = get c "capAdd";
      cap_drop = get c "capDrop";
      security_opt = get c "securityOpt";
      devices = get c "devices";
      sysctls = get c "sysctls";
      labels = get c "labels";
      stop_signal = get c "stopSignal";
      stop_grace_period = get c "stopGracePeriod";
      restart = get c "restart";
      healthcheck = healthcheck (get c "healthcheck");
      depends_on = dependsOn (get c "dependsOn");
      readiness = get c "readiness";
      init = boolKey (get c "init");
      tty = boolKey (get c "tty");
      stdin_open = boolKey (get c "stdinOpen");
    } // (if get c "extraSpec" == null then { } else c.extraSpec);

  # Network options -> /etc/berth/networks/<name>.yaml.
  networkSpec = n:
    clean {
      subnet = get n "subnet";
      gateway = get n "gateway";
      ipv6_subnet = get n "ipv6Subnet";
      internal = boolKey (get n "internal");
      # DNS by name is on unless turned off.
      dns = if get n "dns" == false then false else null;
      interface = get n "interface";
      labels = get n "labels";
    };

  # The text berth reads (JSON is YAML).
  toYAML = toJSON;

  # The files the module writes under /etc/berth: name -> text.
  containerFiles = containers:
    mapAttrs' (name: c: { name = "berth/containers/${name}.yaml"; value = toYAML (containerSpec c); }) containers;
  networkFiles = nets:
    mapAttrs' (name: n: { name = "berth/networks/${name}.yaml"; value = toYAML (networkSpec n); }) nets;

  # virtualisation.oci-containers.containers.<name> -> berth container options. What has no
  # counterpart is listed in `unsupported` (the module turns it into a warning or an assertion).
  fromOciContainer = oc:
    let
      caps = if get oc "capabilities" == null then { } else oc.capabilities;
      capsWith = v: filter (k: caps.${k} == v) (attrNames caps);
      pull = get oc "pull";
      entry = get oc "entrypoint";
    in
    {
      options = clean {
        image = get oc "image";
        imageFile = get oc "imageFile";
        pullPolicy = if pull == "newer" then "always" else pull;
        command = get oc "cmd";
        entrypoint = if entry == null then null else [ entry ];
        environment = get oc "environment";
        environmentFiles = get oc "environmentFiles";
        ports = get oc "ports";
        user = get oc "user";
        volumes = get oc "volumes";
        workingDir = get oc "workdir";
        dependsOn = get oc "dependsOn";
        hostname = get oc "hostname";
        labels = get oc "labels";
        capAdd = capsWith true;
        capDrop = capsWith false;
        devices = get oc "devices";
        networks = get oc "networks";
        # oci-containers' containers restart always (systemd Restart=always).
        restart = "always";
      };
      # oci-containers gives every option with its default: only values that ask for something
      # berth does not do are reported.
      unsupported =
        let
          set = k: hasAttr k oc && !isUnset oc.${k};
          login = if hasAttr "login" oc && isAttrs oc.login then oc.login else { };
        in
        filter (k: k != null) [
          (if set "extraOptions" then "extraOptions" else null)
          (if set "preRunExtraOptions" then "preRunExtraOptions" else null)
          (if set "imageStream" then "imageStream" else null)
          (if get oc "privileged" == true then "privileged" else null)
          (if get oc "autoStart" == false then "autoStart" else null)
          (if set "log-driver" && oc."log-driver" != "journald" then "log-driver" else null)
          (if get login "username" != null || get login "registry" != null then "login" else null)
        ];
    };
}
