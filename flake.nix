{
  description = "berth: a declarative container host agent for systemd machines";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-unstable";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in
    {
      overlays.default = final: _prev: {
        berth = final.callPackage ./nixos-module/package.nix { };
      };

      packages = forAll (pkgs: rec {
        berth = pkgs.callPackage ./nixos-module/package.nix { };
        default = berth;
      });

      nixosModules.default = { pkgs, lib, ... }: {
        imports = [ ./nixos-module/module.nix ];
        services.berth.package = lib.mkDefault self.packages.${pkgs.stdenv.hostPlatform.system}.default;
      };

      # The spec generation, usable without NixOS (pure; no nixpkgs).
      lib = import ./nixos-module/lib;

      checks = forAll (pkgs: {
        vm = import ./nixos-module/tests/vm.nix { inherit pkgs; module = self.nixosModules.default; };
      });
    };
}
