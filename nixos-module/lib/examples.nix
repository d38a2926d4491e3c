# Example container and network options, as a user writes them in services.berth.containers and
# services.berth.networks; CI evaluates `containerFiles`/`networkFiles` of them with the pure
# library and runs `berth check` on the container files (scripts/nix-check.sh, which passes a
# secrets directory holding the env file, as agenix or sops-nix would at /run/secrets).
{ secrets ? "/run/secrets" }:
{
  containers = {
    web = {
      image = "docker.io/library/nginx:1.27";
      pullPolicy = "always";
      command = [ "nginx" "-g" "daemon off;" ];
      environment = { TZ = "UTC"; };
      environmentFiles = [ "${secrets}/web.env" ];
      user = "101:101";
      ports = [ "127.0.0.1:8080:80" "8443:443/tcp" ];
      volumes = [ "/srv/www:/usr/share/nginx/html:ro" "cache:/var/cache/nginx" ];
      tmpfs = [ "/tmp" ];
      readOnly = true;
      memLimit = "256M";
      cpus = 0.5;
      pidsLimit = 200;
      ulimits = { nofile = { soft = 1024; hard = 4096; }; };
      capDrop = [ "NET_RAW" ];
      securityOpt = [ "no-new-privileges" ];
      labels = { tier = "front"; };
      stopSignal = "SIGQUIT";
      stopGracePeriod = "20s";
      restart = "always";
      healthcheck = {
        test = [ "CMD" "wget" "-q" "-O" "/dev/null" "http://127.0.0.1/" ];
        interval = "10s";
        retries = 3;
        startPeriod = "5s";
      };
      readiness = "healthy";
    };
    job = {
      # What a dockerTools.buildImage derivation gives, its store path (here a stand-in).
      imageFile = { outPath = "/nix/store/00000000000000000000000000000000-job.tar.gz"; };
      command = "sh -c 'echo done'";
      networkMode = "none";
      restart = "on-failure:3";
      init = true;
      dependsOn = { web = { condition = "service_healthy"; }; };
    };
    shell = {
      image = "busybox:1.36";
      entrypoint = [ "/bin/sh" ];
      tty = true;
      stdinOpen = true;
      workingDir = "/root";
      networkMode = "host";
      sysctls = { };
      extraSpec = { cap_add = [ "SYS_PTRACE" ]; };
    };
  };
  networks = {
    backend = {
      subnet = "10.89.1.0/24";
      gateway = "10.89.1.1";
      internal = true;
      dns = true;
      labels = { env = "prod"; };
    };
    frontend = { };
  };
}
