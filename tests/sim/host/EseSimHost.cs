// Mono host for the engine: one JSON request on stdin, the entry point's result as JSON on stdout.
// {"entry": "Run", "args": {...}, "check_mode": false}. The entry is any public static method of the
// engine's public classes taking (IDictionary) or (IDictionary, bool checkMode): the same entry points
// the .ps1 modules call, found by name ("Run" on class Engine, or "Class.Method").
using System;
using System.Collections;
using System.IO;
using System.Reflection;
using System.Text;
using ansible_collections.ese.backup.plugins.module_utils.EseEngine;
using ansible_collections.ese.backup.plugins.module_utils._EseNative;

namespace EseSimHost
{
    public static class Program
    {
        public static int Main(string[] argv)
        {
            string input = Console.In.ReadToEnd();
            IDictionary req;
            try
            {
                req = Json.Parse(input) as IDictionary;
                if (req == null) throw new FormatException("request must be a JSON object");
            }
            catch (FormatException e)
            {
                Console.Error.WriteLine("bad request: " + e.Message);
                return 2;
            }
            string entry = req.Contains("entry") ? Convert.ToString(req["entry"]) : "Run";
            IDictionary args = req.Contains("args") ? req["args"] as IDictionary : null;
            bool check = req.Contains("check_mode") && req["check_mode"] is bool && (bool)req["check_mode"];
            MethodInfo method = FindEntry(entry);
            if (method == null) { Console.Error.WriteLine("unknown entry " + entry); return 2; }
            object[] call = method.GetParameters().Length == 2 ? new object[] { args, check } : new object[] { args };
            object result;
            try { result = method.Invoke(null, call); }
            catch (TargetInvocationException e) { throw e.InnerException; }
            Stream stdout = Console.OpenStandardOutput();
            byte[] data = new UTF8Encoding(false).GetBytes(Json.Write(result, false) + "\n");
            stdout.Write(data, 0, data.Length);
            stdout.Flush();
            return 0;
        }

        private static MethodInfo FindEntry(string entry)
        {
            string cls = "Engine", name = entry;
            int dot = entry.LastIndexOf('.');
            if (dot > 0) { cls = entry.Substring(0, dot); name = entry.Substring(dot + 1); }
            foreach (Type t in typeof(Engine).Assembly.GetTypes())
            {
                if (!t.IsPublic || t.Name != cls || !t.Namespace.StartsWith("ansible_collections.ese.backup.plugins.module_utils", StringComparison.Ordinal))
                    continue;
                foreach (MethodInfo m in t.GetMethods(BindingFlags.Public | BindingFlags.Static))
                {
                    ParameterInfo[] ps = m.GetParameters();
                    if (m.Name == name && ps.Length >= 1 && ps.Length <= 2 && ps[0].ParameterType == typeof(IDictionary)
                        && (ps.Length == 1 || ps[1].ParameterType == typeof(bool)))
                        return m;
                }
            }
            return null;
        }
    }
}
