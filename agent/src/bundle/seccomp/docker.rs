//! Docker-format seccomp profile files (`security_opt: [seccomp=/path]`) turned into OCI's
//! `linux.seccomp` shape. Runs in berthd (each pass reads the file once) and in `berth check`.

use serde_json::Value;

/// A Docker-format profile file turned into OCI's shape (Docker's extra keys dropped).
pub fn from_docker_profile(text: &str) -> Result<Value, String> {
    let mut v: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let obj = v.as_object_mut().ok_or("profile is not a JSON object")?;
    if let Some(map) = obj.remove("archMap")
        && !obj.contains_key("architectures")
    {
        {
            let mut arches = Vec::new();
            for m in map.as_array().into_iter().flatten() {
                if let Some(a) = m.get("architecture") {
                    arches.push(a.clone());
                }
                for s in m
                    .get("subArchitectures")
                    .and_then(|s| s.as_array())
                    .into_iter()
                    .flatten()
                {
                    arches.push(s.clone());
                }
            }
            obj.insert("architectures".into(), Value::Array(arches));
        }
    }
    obj.remove("defaultErrno");
    if let Some(Value::Array(calls)) = obj.get_mut("syscalls") {
        calls.retain(|c| {
            c.get("includes")
                .is_none_or(|i| i.as_object().is_some_and(|o| o.is_empty()))
        });
        for c in calls.iter_mut().filter_map(|c| c.as_object_mut()) {
            for k in ["comment", "includes", "excludes", "name"] {
                if k == "name" {
                    if let Some(n) = c.remove("name") {
                        c.insert("names".into(), Value::Array(vec![n]));
                    }
                } else {
                    c.remove(k);
                }
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn docker_profile_converts() {
        let v = from_docker_profile(r#"{"defaultAction":"SCMP_ACT_ERRNO","archMap":[{"architecture":"SCMP_ARCH_X86_64","subArchitectures":["SCMP_ARCH_X86"]}],
            "syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW","comment":"x","includes":{},"excludes":{}},
                        {"names":["mount"],"action":"SCMP_ACT_ALLOW","includes":{"caps":["CAP_SYS_ADMIN"]}}]}"#).unwrap();
        assert_eq!(
            v["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(v["syscalls"].as_array().unwrap().len(), 1);
        assert!(v["syscalls"][0].get("comment").is_none());
    }
}
