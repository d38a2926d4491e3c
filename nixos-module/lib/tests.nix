# Unit checks of the pure spec library: `nix-instantiate --eval --strict nixos-module/lib/tests.nix`
# prints true, or fails naming the check that did not hold.
let
  l = import ./.;
  check = name: got: want:
    if got == want then true
    else throw "lib check `${name}` failed: got ${builtins.toJSON got}, want ${builtins.toJSON want}";
  checks = [
    (check "unset values are left out"
      (l.containerSpec { image = "busybox"; command = null; ports = [ ]; environment = { }; readOnly = false; init = false; })
      { image = "busybox"; })
    (check "camelCase options become the spec's keys"
      (l.containerSpec { image = "a"; workingDir = "/w"; memLimit = "1G"; pidsLimit = -1; stopGracePeriod = "3s"; readOnly = true; stdinOpen = true; })
      { image = "a"; working_dir = "/w"; mem_limit = "1G"; pids_limit = -1; stop_grace_period = "3s"; read_only = true; stdin_open = true; })
    (check "an image derivation becomes its store path"
      (l.containerSpec { imageFile = { type = "derivation"; outPath = "/nix/store/x-img.tar"; }; })
      { image_file = "/nix/store/x-img.tar"; })
    (check "environment files are paths as strings"
      (l.containerSpec { image = "a"; environmentFiles = [ "/run/secrets/a.env" ]; })
      { image = "a"; env_file = [ "/run/secrets/a.env" ]; })
    (check "healthcheck and depends_on keep only what is set"
      (l.containerSpec {
        image = "a";
        healthcheck = { test = "true"; interval = null; startPeriod = "5s"; disable = false; };
        dependsOn = { db = { condition = "service_healthy"; required = true; restart = false; }; };
      })
      { image = "a"; healthcheck = { test = "true"; start_period = "5s"; }; depends_on = { db = { condition = "service_healthy"; }; }; })
    (check "networks: a list, or a map with aliases and addresses"
      [ (l.containerSpec { image = "a"; networks = [ "n" ]; }).networks
        (l.containerSpec { image = "a"; networks = { n = { aliases = [ "x" ]; ipv4Address = "10.0.0.5"; }; }; }).networks ]
      [ [ "n" ] { n = { aliases = [ "x" ]; ipv4_address = "10.0.0.5"; }; } ])
    (check "extraSpec is merged last"
      (l.containerSpec { image = "a"; capAdd = [ "X" ]; extraSpec = { cap_add = [ "Y" ]; }; })
      { image = "a"; cap_add = [ "Y" ]; })
    (check "a network file holds the schema's keys"
      (l.networkSpec { subnet = "10.1.0.0/24"; gateway = null; ipv6Subnet = "fd00::/64"; internal = true; dns = false; interface = "br1"; labels = { }; })
      { subnet = "10.1.0.0/24"; ipv6_subnet = "fd00::/64"; internal = true; dns = false; interface = "br1"; })
    (check "file names"
      (builtins.attrNames (l.containerFiles { web = { image = "a"; }; } // l.networkFiles { n = { }; }))
      [ "berth/containers/web.yaml" "berth/networks/n.yaml" ])
    (check "oci-containers: mapping and the unsupported options"
      (l.fromOciContainer {
        image = "redis"; cmd = [ "redis-server" ]; workdir = "/d"; entrypoint = "/bin/sh"; pull = "newer";
        capabilities = { A = true; B = false; }; extraOptions = [ "--x" ]; autoStart = true;
        "log-driver" = "journald"; login = { registry = null; username = null; passwordFile = null; };
        privileged = false; imageFile = null; environment = { }; ports = [ ];
      })
      {
        options = { image = "redis"; command = [ "redis-server" ]; workingDir = "/d"; entrypoint = [ "/bin/sh" ];
          pullPolicy = "always"; capAdd = [ "A" ]; capDrop = [ "B" ]; restart = "always"; };
        unsupported = [ "extraOptions" ];
      })
    (check "oci-containers: privileged and a login are reported"
      (l.fromOciContainer { image = "a"; privileged = true; login = { registry = "r"; username = "u"; passwordFile = "/p"; }; }).unsupported
      [ "privileged" "login" ])
  ];
in
builtins.all (x: x) checks
