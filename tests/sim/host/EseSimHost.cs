// Copyright: Contributors to the ese.backup collection
// GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
// Mono loader for the simulated Windows host (tests/sim/plugins/connection/esesim.py). C# 5, no reference to
// the engine at compile time: it loads an assembly by path and calls an entry point by reflection.
//
//   mono EseSimHost.exe ASSEMBLY Namespace.Type.Method < {"args": {...}, "check_mode": b, "privileges": [..],
//                                                         "result": {...}}
//     What plugins/module_utils/_EseModule.psm1 (Invoke-EseEntryPoint) does after Ansible.Basic: find
//     Method(IDictionary, bool checkMode), else Method(IDictionary); call it; copy every fact into the
//     module result ("result" is the result so far: changed, invocation); pass the facts' "warnings" on as
//     the result's warnings; list each privilege under windows_only_skipped (the simulated host cannot
//     enable them); an exception of the engine fails the module with "ese.backup engine: <message>".
//     Prints the module result as JSON.
//
//   mono EseSimHost.exe < {"entry": "Run", "args": {...}, "check_mode": false}
//     Without arguments (built together with the engine, build/sim/EseSimHost.exe): the engine's own
//     result for entry "Class.Method" (or "Run" on Engine), as the engine tests use it.
//
// JSON is read and written with the engine's own Json class, found by reflection in the loaded assembly.
using System;
using System.Collections;
using System.Collections.Generic;
using System.IO;
using System.Reflection;
using System.Text;

namespace EseSimHost
{
    public static class Program
    {
        private const string UtilNamespace = "ansible_collections.ese.backup.plugins.module_utils";

        public static int Main(string[] argv)
        {
            if (argv.Length == 2)
                return RunModule(argv[0], argv[1]);
            if (argv.Length != 0)
            {
                Console.Error.WriteLine("usage: EseSimHost.exe [ASSEMBLY Namespace.Type.Method] < request.json");
                return 2;
            }
            return RunLegacy();
        }

        private static int RunModule(string assemblyPath, string entry)
        {
            Assembly assembly = Assembly.LoadFrom(assemblyPath);
            Type json = FindJson(assembly);
            if (json == null) { Console.Error.WriteLine("no Json class in " + assemblyPath); return 2; }
            IDictionary req = Parse(json, Console.In.ReadToEnd());
            if (req == null) return 2;
            IDictionary result = new Dictionary<string, object>();
            IDictionary given = req.Contains("result") ? req["result"] as IDictionary : null;
            if (given != null)
                foreach (DictionaryEntry e in given) result[e.Key] = e.Value;
            if (!result.Contains("changed")) result["changed"] = false;
            List<object> warnings = new List<object>();

            int dot = entry.LastIndexOf('.');
            string typeName = dot > 0 ? entry.Substring(0, dot) : entry;
            string methodName = dot > 0 ? entry.Substring(dot + 1) : "";
            Type type = assembly.GetType(typeName, false);
            if (type == null)
                return Fail(json, result, String.Format("Unable to find type [{0}].", typeName), null);

            IDictionary args = req.Contains("args") ? req["args"] as IDictionary : null;
            bool check = req.Contains("check_mode") && req["check_mode"] is bool && (bool)req["check_mode"];
            MethodInfo method = type.GetMethod(methodName, new Type[] { typeof(IDictionary), typeof(bool) });
            object[] call = new object[] { args, check };
            if (method == null)
            {
                method = type.GetMethod(methodName, new Type[] { typeof(IDictionary) });
                call = new object[] { args };
            }
            if (method == null || !method.IsStatic)
                return Fail(json, result, String.Format("ese.backup: the engine has no entry point {0}::{1}",
                    type.FullName, methodName), null);

            List<object> skipped = new List<object>();
            IList privileges = req.Contains("privileges") ? req["privileges"] as IList : null;
            if (privileges != null)
                foreach (object p in privileges) skipped.Add("privilege " + p);

            object facts;
            try { facts = method.Invoke(null, call); }
            catch (TargetInvocationException e)
            {
                return Fail(json, result, "ese.backup engine: " + e.InnerException.Message, e.InnerException);
            }
            IDictionary dict = facts as IDictionary;
            if (dict == null)
                return Fail(json, result, "You cannot call a method on a null-valued expression.", null);
            foreach (DictionaryEntry fact in dict)
            {
                if ((string)fact.Key == "warnings")
                {
                    IEnumerable list = fact.Value as IEnumerable;
                    if (list != null && !(fact.Value is string))
                        foreach (object w in list) warnings.Add(Convert.ToString(w));
                    continue;
                }
                result[fact.Key] = fact.Value;
            }
            result["windows_only_skipped"] = skipped;
            if (warnings.Count > 0) result["warnings"] = warnings;
            return Write(json, result);
        }

        private static int Fail(Type json, IDictionary result, string msg, Exception e)
        {
            result["failed"] = true;
            result["msg"] = msg;
            if (e != null) result["exception"] = e.ToString();
            return Write(json, result);
        }

        private static int RunLegacy()
        {
            Assembly self = Assembly.GetExecutingAssembly();
            Type json = FindJson(self);
            if (json == null) { Console.Error.WriteLine("this host was built without the engine"); return 2; }
            IDictionary req = Parse(json, Console.In.ReadToEnd());
            if (req == null) return 2;
            string entry = req.Contains("entry") ? Convert.ToString(req["entry"]) : "Run";
            IDictionary args = req.Contains("args") ? req["args"] as IDictionary : null;
            bool check = req.Contains("check_mode") && req["check_mode"] is bool && (bool)req["check_mode"];
            MethodInfo method = FindEntry(self, entry);
            if (method == null) { Console.Error.WriteLine("unknown entry " + entry); return 2; }
            object[] call = method.GetParameters().Length == 2 ? new object[] { args, check } : new object[] { args };
            object result;
            try { result = method.Invoke(null, call); }
            catch (TargetInvocationException e) { throw e.InnerException; }
            return Write(json, result);
        }

        private static Type FindJson(Assembly assembly)
        {
            foreach (Type t in assembly.GetTypes())
            {
                if (t.Name == "Json" && t.Namespace != null && t.Namespace.StartsWith(UtilNamespace, StringComparison.Ordinal)
                    && t.GetMethod("Parse", new Type[] { typeof(string) }) != null
                    && t.GetMethod("Write", new Type[] { typeof(object), typeof(bool) }) != null)
                    return t;
            }
            return null;
        }

        private static IDictionary Parse(Type json, string input)
        {
            try
            {
                IDictionary req = json.GetMethod("Parse", new Type[] { typeof(string) }).Invoke(null, new object[] { input }) as IDictionary;
                if (req == null) Console.Error.WriteLine("bad request: must be a JSON object");
                return req;
            }
            catch (TargetInvocationException e)
            {
                Console.Error.WriteLine("bad request: " + e.InnerException.Message);
                return null;
            }
        }

        private static int Write(Type json, object result)
        {
            string text = (string)json.GetMethod("Write", new Type[] { typeof(object), typeof(bool) }).Invoke(null, new object[] { result, false });
            Stream stdout = Console.OpenStandardOutput();
            byte[] data = new UTF8Encoding(false).GetBytes(text + "\n");
            stdout.Write(data, 0, data.Length);
            stdout.Flush();
            return 0;
        }

        private static MethodInfo FindEntry(Assembly assembly, string entry)
        {
            string cls = "Engine", name = entry;
            int dot = entry.LastIndexOf('.');
            if (dot > 0) { cls = entry.Substring(0, dot); name = entry.Substring(dot + 1); }
            foreach (Type t in assembly.GetTypes())
            {
                if (!t.IsPublic || t.Name != cls || t.Namespace == null || !t.Namespace.StartsWith(UtilNamespace, StringComparison.Ordinal))
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
