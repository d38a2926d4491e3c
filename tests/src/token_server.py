# Minimal Docker registry token server for berth tests (Bearer JWT RS256 with x5c), stdlib + openssl CLI.
import base64, json, subprocess, sys, time, os, urllib.parse
from http.server import BaseHTTPRequestHandler, HTTPServer
KEY, CRT = sys.argv[1], sys.argv[2]; PORT = int(sys.argv[3]); USERS = {'tbuser': 'tbpass'}
der = subprocess.run(['openssl', 'x509', '-in', CRT, '-outform', 'DER'], capture_output=True, check=True).stdout
b64u = lambda b: base64.urlsafe_b64encode(b).rstrip(b'=').decode()
def sign(claims):
    h = b64u(json.dumps({'typ': 'JWT', 'alg': 'RS256', 'x5c': [base64.b64encode(der).decode()]}).encode())
    p = b64u(json.dumps(claims).encode()); inp = f'{h}.{p}'.encode()
    sig = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', KEY], input=inp, capture_output=True, check=True).stdout
    return f'{h}.{p}.{b64u(sig)}'
REFRESH = {'tb-refresh-token': 'tbuser'}  # identity (OAuth2 refresh) tokens, for the POST grant
class H(BaseHTTPRequestHandler):
    def issue(self, user, scopes, service, key):
        access = []
        for s in scopes:
            typ, name, actions = s.split(':', 2) if s.count(':') >= 2 else (s, '', '')
            acts = actions.split(',') if user else [x for x in actions.split(',') if x == 'pull' and False]
            access.append({'type': typ, 'name': name, 'actions': acts})
        now = int(time.time())
        tok = sign({'iss': 'tb-issuer', 'sub': user or '', 'aud': service, 'exp': now + 300,
                    'nbf': now - 10, 'iat': now, 'jti': os.urandom(8).hex(), 'access': access})
        body = json.dumps({key: tok, 'access_token': tok, 'expires_in': 300}).encode()
        self.send_response(200); self.send_header('Content-Type', 'application/json'); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body)
    def do_GET(self):
        u = urllib.parse.urlparse(self.path); q = urllib.parse.parse_qs(u.query)
        sys.stderr.write(f'TOKEN REQ {self.path} auth={self.headers.get("Authorization","-")[:12]}...\n')
        user = None; a = self.headers.get('Authorization', '')
        if a.startswith('Basic '):
            n, _, pw = base64.b64decode(a[6:]).decode().partition(':')
            if USERS.get(n) != pw: self.send_response(401); self.end_headers(); return
            user = n
        self.issue(user, q.get('scope', []), q.get('service', [''])[0], 'token')
    def do_POST(self):
        f = urllib.parse.parse_qs(self.rfile.read(int(self.headers.get('Content-Length', 0))).decode())
        one = lambda k: f.get(k, [''])[0]
        user = REFRESH.get(one('refresh_token')) if one('grant_type') == 'refresh_token' else None
        if not user or not one('client_id'):
            body = b'{"error":"invalid_grant"}'
            self.send_response(401); self.send_header('Content-Length', str(len(body))); self.end_headers(); self.wfile.write(body); return
        self.issue(user, one('scope').split(), one('service'), 'access_token')
    def log_message(self, *a): pass
HTTPServer(('127.0.0.1', PORT), H).serve_forever()
