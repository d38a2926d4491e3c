# A NixOS VM test of the module (needs nixpkgs and KVM; it cannot run where nixpkgs is absent):
#
#   nix build .#checks.x86_64-linux.vm -L        # from the repository root (flake)
#   nix-build nixos-module/tests/vm.nix           # without flakes, with <nixpkgs> on NIX_PATH
#
# Boots a VM with two containers from a dockerTools image and checks: berthd.service active
# (Type=notify), the containers' units and their output in journald, no restart on a switch
# that changes nothing of theirs, a restart of the changed one only, and a removed one stopped.
{ pkgs ? import <nixpkgs> { }
, module ? ../module.nix
}:

let
  image = pkgs.dockerTools.buildImage {
    name = "berth-test";
    tag = "latest";
    copyToRoot = [ pkgs.busybox ];
    config.Cmd = [ "/bin/sh" "-c" "echo hello from $NAME; exec sleep 1000000" ];
  };
  container = name: extra: {
    imageFile = image;
    environment = { NAME = name; } // extra;
    networkMode = "none";
    restart = "always";
  };
in
pkgs.testers.runNixOSTest {
  name = "berth";
  nodes.machine = { lib, ... }: {
    imports = [ module ];
    virtualisation.memorySize = 1024;
    services.berth.enable = true;
    services.berth.containers = lib.mkDefault {
      web = container "web" { };
      other = container "other" { };
    };
    specialisation = {
      # Something unrelated to berth changes.
      unrelated.configuration.environment.etc."unrelated".text = "x";
      # web's spec changes; other's does not.
      changed.configuration.services.berth.containers = {
        web = container "web" { VERSION = "2"; };
        other = container "other" { };
      };
      # other is removed.
      removed.configuration.services.berth.containers = {
        web = container "web" { VERSION = "2"; };
      };
    };
  };

  testScript = ''
    def invocation(unit):
        return machine.succeed(f"systemctl show -p InvocationID --value {unit}").strip()

    # Each switch repoints /run/current-system, so the specialisations are found from the boot one.
    base = machine.succeed("readlink -f /run/current-system").strip()

    def switch(to):
        machine.succeed(f"{base}/specialisation/{to}/bin/switch-to-configuration test")

    machine.wait_for_unit("berthd.service")
    assert machine.succeed("systemctl show -p Type --value berthd.service").strip() == "notify"
    machine.wait_for_unit("berth-web.service")
    machine.wait_for_unit("berth-other.service")
    machine.succeed("systemctl status berth-web.service")
    machine.wait_until_succeeds("journalctl -u berth-web.service | grep -q 'hello from web'")
    machine.succeed("berth ps | grep -q web")
    machine.succeed("berth check")
    web0, other0 = invocation("berth-web.service"), invocation("berth-other.service")

    with subtest("a switch that changes nothing of the containers restarts none"):
        switch("unrelated")
        machine.sleep(5)
        assert invocation("berth-web.service") == web0
        assert invocation("berth-other.service") == other0

    with subtest("a changed spec restarts that container only"):
        switch("changed")
        machine.wait_until_succeeds(
            f"test \"$(systemctl show -p InvocationID --value berth-web.service)\" != {web0}"
        )
        machine.wait_for_unit("berth-web.service")
        assert invocation("berth-other.service") == other0

    with subtest("a removed container is stopped"):
        web1 = invocation("berth-web.service")
        switch("removed")
        machine.wait_until_fails("systemctl is-active berth-other.service")
        assert invocation("berth-web.service") == web1

    with subtest("restarting berthd restarts no container"):
        machine.succeed("systemctl restart berthd.service")
        machine.sleep(3)
        assert invocation("berth-web.service") == web1
  '';
}
